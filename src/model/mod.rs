//! The model: the cached, watched view of the ZooKeeper tree, in plain Rust.
//!
//! * [`view`] — the cached, watched view (the design essay is there);
//! * [`tree`] — its tables: nodes, children on their way in or out, notes for the kernel;
//! * [`watch`] — the task that applies ZooKeeper's events to the view;
//! * [`watches`] — which nodes are watched: those the kernel holds;
//! * `flight` — one read per node at a time, and what a read in flight must hear of;
//! * [`inodes`] — inode numbers for the paths the kernel has been shown;
//! * [`memory`] — the allocator's settings that keep a large cache compact.

mod flight;
pub mod handover;
pub mod inodes;
pub mod links;
pub mod memory;
pub mod tree;
pub mod view;
pub mod watch;
pub mod watches;
mod watchset;
