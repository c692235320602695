"""Drives nano in a pseudo-terminal, as a person would: open FILE, replace FROM with TO
(nano's ^\\ search-and-replace), save with ^S, quit with ^X.

    python3 nano.py FILE FROM TO [NANO-OPTION...]   (exits as nano does)
"""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

path, old, new = sys.argv[1:4]
options = sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    os.execvp("nano", ["nano", "--ignorercfiles", *options, path])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))


def drain(seconds):
    """Reads what nano draws for a while, so that it is ready for the next key."""
    end = time.time() + seconds
    seen = b""
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


drain(1.0)
for keys in [b"\x1c", old.encode() + b"\r", new.encode() + b"\r", b"a", b"\x13", b"\x18"]:
    os.write(fd, keys)
    drain(0.5)
deadline = time.time() + 10
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    drain(0.1)
os.kill(pid, 9)
os.waitpid(pid, 0)
sys.exit("nano did not exit")
