"""The capture scenarios: machine, kernel command line, guest setup and measured workload.

Each scenario's ``work`` runs ``kmmwork``, which warms up, then opens the window with the
start marker syscall and closes it with the stop marker (see ``kmmwork.c``). ``setup`` runs
before, outside the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .debian import KERNEL_RELEASE

DM_KEY = "6b6d6d2d64656d6f2d6b65792d6e6f742d7365637265742d3030303030303031" * 2  # 64 bytes, a fixed test key


@dataclass(frozen=True)
class Scenario:
    """One capture: ``qemu-system-aarch64 -M virt -cpu neoverse-n1`` with these settings."""

    name: str
    description: str
    work: str
    setup: str = ""
    smp: int = 2
    mem_mib: int = 1024
    numa_nodes: int = 1                     # >1: -numa node,memdev= with equal halves
    virtualization: bool = False            # -M virt,virtualization=on (boot at EL2)
    cmdline: str = ""
    modules: tuple[str, ...] = ()           # "name [param=value ...]", insmod'ed by setup
    module_files: tuple[str, ...] = ()      # only copied; their dependencies are loaded
    packages: tuple[str, ...] = ()          # Debian arm64 packages copied into the initramfs
    max_refs: int = 4_000_000
    extra: dict = field(default_factory=dict)


_SCENARIOS = [
    Scenario(
        "syscalls",
        "lmbench-style suite, one measured round: 50 null syscalls (getppid), 10 open/close, "
        "5 mmap+touch+munmap of 64 KiB, 10 signals to self, 10 pipe ping-pongs with a second "
        "process, 2 fork+exit, 1 fork+exec, one tmpfs mount/umount",
        work="/bin/kmmwork syscalls 1"),
    Scenario(
        "pagecache",
        "sequential 64 KiB reads of a 4 MiB file already in the page cache (tmpfs), on a "
        "2-node NUMA machine (one vCPU and 512 MiB per node)",
        setup="mkdir -p /data && mount -t tmpfs -o size=64m data /data && "
              "dd if=/dev/zero of=/data/big bs=1M count=4 2>/dev/null",
        work="/bin/kmmwork read /data/big",
        numa_nodes=2),
    Scenario(
        "dmcrypt",
        "O_DIRECT 64 KiB writes of 512 KiB (then fsync) to dm-crypt (aes-xts-plain64, "
        "arm64 CE) on a brd ramdisk, set up with Debian's dmsetup",
        setup=f"dmsetup --noudevsync create kmmcrypt --table '0 32768 crypt aes-xts-plain64 "
              f"{DM_KEY} 0 /dev/ram0 0' && ls /dev/dm-0 >/dev/null",
        work="/bin/kmmwork ddwrite /dev/dm-0 512", max_refs=8_000_000,
        modules=("brd rd_nr=1 rd_size=16384", "dm-crypt", "xts", "aes-ce-blk"),
        packages=("dmsetup", "libdevmapper1.02.1", "libselinux1", "libpcre2-8-0", "libudev1",
                  "libc6")),
    Scenario(
        "memcached",
        "Debian's memcached (1 worker thread) on loopback TCP; kmmwork's client, after filling "
        "2000 keys and 200 warm-up requests, sends 40 requests (90 % get, 10 % set, 200-byte "
        "values)",
        setup="ip link set lo up && memcached -u root -d -U 0 -p 11211 -t 1 -m 64 -l 127.0.0.1",
        work="/bin/kmmwork memcache 11211 40",
        packages=("memcached", "libevent-2.1-7", "libsasl2-2", "libssl3", "libc6")),
    Scenario(
        "module",
        "finit_module and delete_module of dm-zero (its dependencies dm-mod and dax stay "
        "loaded), after "
        "one warm-up load and unload",
        work=f"/bin/kmmwork module /lib/modules/{KERNEL_RELEASE}/kernel/drivers/md/dm-zero.ko "
             "dm_zero",
        module_files=("dm-zero",), max_refs=16_000_000),
    Scenario(
        "bpf",
        "BPF_PROG_LOAD of a 53-instruction socket filter (verifier and arm64 JIT), "
        "BPF_PROG_TEST_RUN 100 times on a 128-byte packet, close",
        work="/bin/kmmwork bpf 100"),
    Scenario(
        "pkvm",
        "booted at EL2 with kvm-arm.mode=protected: the host runs under pKVM's stage 2; first "
        "touch of 4 MiB of fresh anonymous memory then 50 null syscalls (host stage-2 faults "
        "reach EL2)",
        work="/bin/kmmwork touch 4",
        virtualization=True, cmdline="kvm-arm.mode=protected"),
]

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _SCENARIOS}


def get(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}",
                          "SCENARIO")
    return SCENARIOS[name]
