#!/usr/bin/env python3
"""Writes the seed inputs of the `event_decoder` fuzz target into OUTDIR: realistic event
sequences (tracer_common::Event, 96 bytes each, little-endian) like the probes write them.

    python3 events.py OUTDIR

The committed corpus holds what this produced, minimised with `cargo fuzz cmin`."""
import os
import struct
import sys

# tracer_common::Event: ts, instance, tgid, tid, role, kind, origin, depth, parent_origin, library,
# context_this, parent_this, fields[4], ret, entry_ts.
EVENT = struct.Struct("<QQIIHBBBBHQQ4QQQ")
assert EVENT.size == 96

ROLE = dict(device_init=1, fabric_context=2, dispatch_context=3, program_binaries=4,
            device_open=5, kernel_binary_write=6, device_close=7, mesh_close=8, mesh_open=9,
            device_allocator=10, mesh_allocator=11, scratch_allocator=12, bank_new=13,
            bank_allocate=14, bank_free=15, bank_free_all=16, cb_allocate=17, cb_free_all=18,
            workload_enqueue=19)
CALL, ENTER, EXIT, PROCESS_EXIT = range(4)
APP, FABRIC, DISPATCH, PROGRAM, DEVICE_INIT, MESH_OPEN, DEVICE_ALLOC, MESH_ALLOC, SCRATCH = range(9)


class Seq:
    def __init__(self, pid=1000):
        self.pid, self.ts, self.out = pid, 1_000_000, bytearray()

    def ev(self, role, kind=CALL, origin=APP, fields=(), this=0, parent=(APP, 0), depth=0,
           ret=0, tid=None):
        self.ts += 1000
        f = list(fields) + [0] * (4 - len(fields))
        self.out += EVENT.pack(self.ts, 7, self.pid, tid or self.pid,
                               ROLE.get(role, 0), kind, origin, depth, parent[0], 0, this,
                               parent[1], *f, ret, self.ts - 10)
        return self

    def exit(self, status):
        return self.ev(None, PROCESS_EXIT, fields=[status])


def healthy():
    s = Seq()
    s.ev("device_init", ENTER, DEVICE_INIT, this=0xd0, depth=1)
    s.ev("device_open", origin=DEVICE_INIT, fields=[0xd0, 0], this=0xd0)
    s.ev("fabric_context", ENTER, FABRIC, this=0xd0, parent=(DEVICE_INIT, 0xd0), depth=2)
    for _ in range(2):
        s.ev("kernel_binary_write", origin=FABRIC, fields=[56 << 10, 0, 0x4000], this=0xd0)
    s.ev("fabric_context", EXIT, FABRIC, this=0xd0, parent=(DEVICE_INIT, 0xd0), depth=2)
    s.ev("dispatch_context", ENTER, DISPATCH, this=0xd0, depth=2)
    for _ in range(2):
        s.ev("kernel_binary_write", origin=DISPATCH, fields=[46 << 10, 0, 0x4000], this=0xd0)
    s.ev("dispatch_context", EXIT, DISPATCH, this=0xd0, depth=2)
    s.ev("device_init", EXIT, DEVICE_INIT, this=0xd0, depth=1)
    s.ev("program_binaries", ENTER, PROGRAM, this=0x9000, depth=1)
    s.ev("kernel_binary_write", origin=PROGRAM, fields=[8192, 0, 0x8000], this=0x9000)
    s.ev("program_binaries", EXIT, PROGRAM, this=0x9000, depth=1)
    s.ev("kernel_binary_write", fields=[4096, 0, 0x8000])
    s.ev("workload_enqueue", fields=[0x77])
    s.ev("device_close", fields=[0xd0])
    return s.exit(9 << 8).out


def mesh():
    s = Seq(2000)
    token = 0x7FF0
    s.ev("mesh_open", ENTER, MESH_OPEN, this=token, depth=1)
    for dev, chip in [(0xD0, 0), (0xD1, 1)]:
        s.ev("device_open", origin=MESH_OPEN, fields=[dev, chip], this=token)
        s.ev("device_allocator", ENTER, DEVICE_ALLOC, this=dev, parent=(MESH_OPEN, token), depth=2)
        s.ev("bank_new", origin=DEVICE_ALLOC, fields=[0xB000 + dev, 0], this=dev)
        s.ev("device_allocator", EXIT, DEVICE_ALLOC, this=dev, depth=2)
    s.ev("mesh_allocator", ENTER, MESH_ALLOC, fields=[0x2222], this=0x1111,
         parent=(MESH_OPEN, token), depth=2)
    for bank, ty in [(0xB1, 0), (0xB2, 1), (0xB3, 3)]:
        s.ev("bank_new", origin=MESH_ALLOC, fields=[bank, ty], this=0x1111)
    s.ev("mesh_allocator", EXIT, MESH_ALLOC, this=0x1111, depth=2)
    s.ev("mesh_open", EXIT, MESH_OPEN, this=token, depth=1)
    s.ev("bank_allocate", fields=[0xB1, 2048], ret=0x1000)
    s.ev("bank_allocate", fields=[0xB1, 8192], ret=0x2000)
    s.ev("bank_allocate", fields=[0xB2, 4096], ret=0x1000)
    s.ev("bank_allocate", fields=[0xB0D0, 1024], ret=0x3000)
    s.ev("bank_allocate", fields=[0xB1, 512], ret=0x1000)  # same address again
    s.ev("bank_free", fields=[0xB1, 0x2000])
    s.ev("bank_free", fields=[0xB1, 0x9999])  # never allocated
    s.ev("mesh_close", fields=[0x2222])
    s.ev("bank_free_all", fields=[0xB1])
    s.ev("device_close", fields=[0xD0])
    return s.exit(0).out


def misc():
    s = Seq(3000)
    s.ev("device_open", fields=[0xD0, 0])
    s.ev("device_open", fields=[0xD1, 1])
    for _ in range(3):
        s.ev("cb_allocate", fields=[0x100, 4096, 0xD1])
    s.ev("cb_free_all", fields=[0xD1])
    s.ev("cb_allocate", fields=[0x100, 4096, 0xEE])
    s.ev("scratch_allocator", ENTER, SCRATCH, depth=1)
    s.ev("scratch_allocator", ENTER, SCRATCH, depth=2)
    s.ev("bank_new", origin=SCRATCH, fields=[0xC1, 4])
    s.ev("scratch_allocator", EXIT, SCRATCH, depth=2)
    s.ev("scratch_allocator", EXIT, SCRATCH, depth=1)
    s.ev("bank_new", fields=[0xC2, 9])  # outside any allocator, unknown buffer type
    s.ev("bank_allocate", fields=[0xC2, 64], ret=0x40)
    s.ev("kernel_binary_write", fields=[100, 1, 0x4000], tid=3001)
    other = Seq(3001)  # a second process, still running at the end
    other.ev("device_open", fields=[0xD0, 0xFFFFFFFF])
    s.out += other.out
    s.ev(None, kind=9)  # an unknown kind
    return s.exit(0xFFFFFFFFFFFFFFFF).out + b"\x01" * 40  # unknown status; a short record


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in [("healthy", healthy()), ("mesh", mesh()), ("misc", misc()),
                       ("short", b"\0" * 95)]:
        with open(os.path.join(out, f"seed-{name}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
