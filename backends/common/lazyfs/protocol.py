"""The kernel's FUSE protocol (``linux/fuse.h``, version 7.38), the subset lazyfs speaks.

No libfuse: the server reads requests from ``/dev/fuse`` and writes replies to it. Every
request starts with ``fuse_in_header``; every reply with ``fuse_out_header`` (error is a
negative errno). Struct layouts are little-endian, naturally aligned, as in the header file.
"""

from __future__ import annotations

import os
import stat
import struct

MAJOR, MINOR = 7, 38  # the kernel offers a newer minor; it accepts ours (checked: 7.45)

# opcodes
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK = 8, 9, 10, 11, 12, 13
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC = 14, 15, 16, 17, 18, 20
SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, FLUSH, INIT = 21, 22, 23, 24, 25, 26
OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 27, 28, 29, 30
ACCESS, CREATE, INTERRUPT, DESTROY = 34, 35, 36, 38
BATCH_FORGET, FALLOCATE, READDIRPLUS, RENAME2, LSEEK, SYNCFS = 42, 43, 44, 45, 46, 50

NAMES = {
    v: k.lower()
    for k, v in list(globals().items())
    if k.isupper() and isinstance(v, int) and 0 < v < 64 and k not in ("MAJOR", "MINOR")
}

# init flags we ask for (only those the kernel offers are granted)
ASYNC_READ = 1 << 0
BIG_WRITES = 1 << 5  # writes larger than one page (the prototype's pitfall)
MAX_PAGES = 1 << 22
PARALLEL_DIROPS = 1 << 18
WRITEBACK_CACHE = 1 << 16  # the kernel buffers writes (opt-in, see LazyMount)
INIT_EXT = 1 << 30

# setattr valid bits
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FATTR_ATIME, FATTR_MTIME, FATTR_FH = 1 << 4, 1 << 5, 1 << 6
FATTR_ATIME_NOW, FATTR_MTIME_NOW = 1 << 7, 1 << 8
FATTR_LOCKOWNER, FATTR_CTIME = 1 << 9, 1 << 10

GETATTR_FH = 1 << 0
FSYNC_FDATASYNC = 1 << 0
NOTIFY_INVAL_INODE = 2

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
INIT_IN = struct.Struct("<IIIII")  # major minor max_readahead flags flags2 (+unused)
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")  # 64 bytes
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # 88 bytes: fuse_attr
ENTRY_OUT = struct.Struct("<QQQQII")  # nodeid generation entry_valid attr_valid (+nsecs), attr
ATTR_OUT = struct.Struct("<QII")  # attr_valid attr_valid_nsec dummy, then attr
GETATTR_IN = struct.Struct("<IIQ")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QII")
CREATE_IN = struct.Struct("<IIII")
READ_IN = struct.Struct("<QQIIQII")  # also fuse_write_in (same layout, 40 bytes)
WRITE_OUT = struct.Struct("<II")
RELEASE_IN = struct.Struct("<QIIQ")
FSYNC_IN = struct.Struct("<QII")
MKDIR_IN = struct.Struct("<II")
MKNOD_IN = struct.Struct("<IIII")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
LINK_IN = struct.Struct("<Q")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
KSTATFS = struct.Struct("<QQQQQIIII24x")  # 80 bytes
FALLOCATE_IN = struct.Struct("<QQQII")
DIRENT = struct.Struct("<QQII")  # ino off namelen type, then name padded to 8
NOTIFY_INVAL_INODE_OUT = struct.Struct("<Qqq")

ENTRY_TIMEOUT_S = 1  # kernel caches names and attributes this long; all access goes through us


def pack_attr(st: os.stat_result, size: int | None = None, mtime_ns: int | None = None) -> bytes:
    """fuse_attr from a backing stat, with the overlay's size/mtime where it has them."""
    sz = st.st_size if size is None else size
    blocks = st.st_blocks if size is None else max(st.st_blocks, (sz + 511) // 512)
    mt = st.st_mtime_ns if mtime_ns is None else mtime_ns
    return ATTR.pack(
        st.st_ino,
        sz,
        blocks,
        st.st_atime_ns // 1_000_000_000,
        mt // 1_000_000_000,
        st.st_ctime_ns // 1_000_000_000,
        st.st_atime_ns % 1_000_000_000,
        mt % 1_000_000_000,
        st.st_ctime_ns % 1_000_000_000,
        st.st_mode,
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_rdev & 0xFFFFFFFF,
        4096,
        0,
    )


def dirent(ino: int, off: int, name: bytes, mode: int) -> bytes:
    """One fuse_dirent, padded to 8 bytes; ``off`` is the offset of the *next* entry."""
    rec = DIRENT.pack(ino, off, len(name), stat.S_IFMT(mode) >> 12) + name
    return rec + b"\0" * (-len(rec) % 8)
