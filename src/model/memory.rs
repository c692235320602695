//! How the process's memory is laid out: the allocator's settings that keep a large
//! cache compact.
//!
//! glibc's malloc gives each thread that allocates its own arena, up to eight per
//! core. zkfs's cached nodes are made on whichever thread (fuser's, the waiting pool's,
//! the runtime's) read them, so they spread over many arenas, each with its own free
//! space and partly used pages: reading 115,000 nodes measured ~4 MiB more with the
//! default than with two arenas (README "Performance", "Large trees"). Most of the
//! allocating work happens under the cache's one lock anyway, and each thread keeps
//! a small cache of freed blocks of its own, so two arenas are enough for zkfs.

/// Arenas glibc's malloc may use, unless `MALLOC_ARENA_MAX` says otherwise.
pub const ARENAS: i32 = 2;

/// Caps malloc's arenas at [`ARENAS`] (glibc only; a no-op elsewhere). Call before
/// any thread starts. An explicit `MALLOC_ARENA_MAX` in the environment wins.
pub fn compact_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread allocates yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
