/*
 * kmmwork: the guest side of `kmm trace capture`, built as a static arm64 program and run by
 * the initramfs init. Each workload warms up, then opens the measured window with a marker
 * syscall, runs, and closes it with a second marker syscall.
 *
 * Markers: faccessat(AT_FDCWD, path, F_OK, 0) with `path` on a page mapped at a fixed
 * address (MARK_START or MARK_STOP); the kernel reads the path with strncpy_from_user(), and
 * that first EL1 access to the page is what the kmmtrace plugin watches for.
 *
 *   kmmwork syscalls ROUNDS         lmbench-style mix (null, fork+exit, fork+exec, mmap,
 *                                   open/close, signal, pipe ping-pong, tmpfs mount)
 *   kmmwork read FILE               sequential read of a page-cached file (64 KiB reads)
 *   kmmwork ddwrite DEV KIB         O_DIRECT 64 KiB writes to a block device, then fsync
 *   kmmwork memcache PORT REQUESTS  memcached text-protocol client: 90 % get, 10 % set
 *   kmmwork module FILE NAME [ARGS] finit_module + delete_module
 *   kmmwork bpf REPEAT              BPF_PROG_LOAD (verifier + JIT), BPF_PROG_TEST_RUN, close
 *   kmmwork touch MIB               first touch of fresh anonymous memory, then syscalls
 *   kmmwork peek SYMBOL:BYTES ...   read kernel variables through /proc/kcore
 *   kmmwork true                    exit 0 (the fork+exec target)
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <unistd.h>

#define MARK_START 0x4b4d4d000000UL
#define MARK_STOP  0x4b4d4e000000UL

static void die(const char *what)
{
    fprintf(stderr, "kmmwork: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void marker(unsigned long at)
{
    char *p = mmap((void *)at, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        die("mmap marker");
    strcpy(p, at == MARK_START ? "/kmm-window-start" : "/kmm-window-stop");
    syscall(SYS_faccessat, AT_FDCWD, p, F_OK, 0);
}

static void window_start(void) { marker(MARK_START); }
static void window_stop(void) { marker(MARK_STOP); }

/* ---- lmbench-style syscall suite ------------------------------------------------------ */
static volatile int sigs;
static void on_usr1(int s) { (void)s; sigs++; }

static int debug;
#define STEP(name) do { if (debug) fprintf(stderr, "kmmwork: %s\n", name); } while (0)

static void syscall_round(const char *self, int pfd_w, int pfd_r)
{
    char b = 'x';
    STEP("null");
    for (int i = 0; i < 50; i++)
        syscall(SYS_getppid);
    STEP("open");
    for (int i = 0; i < 10; i++) {
        int fd = open("/etc/kmm.conf", O_RDONLY);
        if (fd < 0)
            die("open");
        close(fd);
    }
    STEP("mmap");
    for (int i = 0; i < 5; i++) {
        char *m = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            die("mmap");
        for (int off = 0; off < (64 << 10); off += 4096)
            m[off] = 1;
        munmap(m, 64 << 10);
    }
    STEP("signal");
    for (int i = 0; i < 10; i++)
        kill(getpid(), SIGUSR1);
    STEP("pipe");
    for (int i = 0; i < 10; i++) {
        if (write(pfd_w, &b, 1) != 1 || read(pfd_r, &b, 1) != 1)
            die("pipe");
    }
    STEP("fork");
    for (int i = 0; i < 2; i++) {
        pid_t c = fork();
        if (c == 0)
            _exit(0);
        waitpid(c, NULL, 0);
    }
    STEP("exec");
    pid_t c = fork();
    if (c == 0) {
        execl(self, self, "true", (char *)NULL);
        _exit(127);
    }
    waitpid(c, NULL, 0);
    STEP("mount");
    if (mount("none", "/mnt", "tmpfs", 0, "size=1m") != 0)
        die("mount");
    if (umount("/mnt") != 0)
        die("umount");
}

static int cmd_syscalls(const char *self, int rounds)
{
    int to_child[2], from_child[2];
    signal(SIGUSR1, on_usr1);
    if (pipe(to_child) || pipe(from_child))
        die("pipe");
    pid_t echo = fork();
    if (echo == 0) {                /* pipe echo partner */
        char b;
        while (read(to_child[0], &b, 1) == 1)
            if (write(from_child[1], &b, 1) != 1)
                break;
        _exit(0);
    }
    syscall_round(self, to_child[1], from_child[0]);    /* warm-up */
    window_start();
    for (int r = 0; r < rounds; r++)
        syscall_round(self, to_child[1], from_child[0]);
    window_stop();
    kill(echo, SIGKILL);
    waitpid(echo, NULL, 0);
    printf("syscalls: %d rounds, %d signals\n", rounds, sigs);
    return 0;
}

/* ---- page cache sequential read -------------------------------------------------------- */
static long read_all(const char *path, char *buf)
{
    int fd = open(path, O_RDONLY);
    long total = 0, n;
    if (fd < 0)
        die("open file");
    while ((n = read(fd, buf, 64 << 10)) > 0)
        total += n;
    close(fd);
    return total;
}

static int cmd_read(const char *path)
{
    static char buf[64 << 10];
    read_all(path, buf);            /* warm-up: the file is now in the page cache */
    window_start();
    long n = read_all(path, buf);
    window_stop();
    printf("read: %ld bytes\n", n);
    return 0;
}

/* ---- dd to dm-crypt -------------------------------------------------------------------- */
static int cmd_ddwrite(const char *dev, int kib)
{
    const size_t bs = 64 << 10;
    char *buf = aligned_alloc(4096, bs);
    if (!buf)
        die("alloc");
    for (size_t i = 0; i < bs; i++)
        buf[i] = (char)(i * 131 + 7);
    int fd = open(dev, O_WRONLY | O_DIRECT);
    if (fd < 0)
        die("open device");
    for (int i = 0; i < 16; i++)    /* warm-up: 1 MiB */
        if (write(fd, buf, bs) != (ssize_t)bs)
            die("write");
    fsync(fd);
    lseek(fd, 0, SEEK_SET);
    window_start();
    long blocks = (long)kib * 1024 / (long)bs;
    for (long i = 0; i < blocks; i++)
        if (write(fd, buf, bs) != (ssize_t)bs)
            die("write");
    fsync(fd);
    window_stop();
    close(fd);
    printf("ddwrite: %d KiB\n", kib);
    return 0;
}

/* ---- memcached client ------------------------------------------------------------------ */
static int mc_fd;
static char mc_buf[8192];

static void mc_roundtrip(const char *req, size_t len, const char *until)
{
    if (write(mc_fd, req, len) != (ssize_t)len)
        die("send");
    size_t got = 0;
    for (;;) {
        ssize_t n = read(mc_fd, mc_buf + got, sizeof mc_buf - 1 - got);
        if (n <= 0)
            die("recv");
        got += (size_t)n;
        mc_buf[got] = 0;
        if (strstr(mc_buf, until))
            return;
        if (got >= sizeof mc_buf - 1)
            got = 0;
    }
}

static uint32_t lcg = 12345;
static uint32_t next_rand(void) { lcg = lcg * 1103515245u + 12345u; return lcg >> 8; }

static void mc_request(int keys, int set)
{
    char req[512], val[200];
    int k = (int)(next_rand() % (uint32_t)keys);
    if (set) {
        memset(val, 'a' + k % 26, sizeof val);
        int n = snprintf(req, sizeof req, "set key:%06d 0 0 %zu\r\n", k, sizeof val);
        memcpy(req + n, val, sizeof val);
        memcpy(req + n + sizeof val, "\r\n", 2);
        mc_roundtrip(req, (size_t)n + sizeof val + 2, "\r\n");
    } else {
        int n = snprintf(req, sizeof req, "get key:%06d\r\n", k);
        mc_roundtrip(req, (size_t)n, "END\r\n");
    }
}

static int cmd_memcache(int port, int requests)
{
    const int keys = 2000;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0;; tries++) {
        mc_fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(mc_fd, (struct sockaddr *)&a, sizeof a) == 0)
            break;
        close(mc_fd);
        if (tries > 200)
            die("connect");
        usleep(50000);
    }
    int one = 1;
    setsockopt(mc_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int k = 0; k < keys; k++) {    /* warm-up: fill every key once, read some back */
        lcg = (uint32_t)k;
        char req[512], val[200];
        memset(val, 'a' + k % 26, sizeof val);
        int n = snprintf(req, sizeof req, "set key:%06d 0 0 %zu\r\n", k, sizeof val);
        memcpy(req + n, val, sizeof val);
        memcpy(req + n + sizeof val, "\r\n", 2);
        mc_roundtrip(req, (size_t)n + sizeof val + 2, "\r\n");
    }
    lcg = 12345;
    for (int i = 0; i < 200; i++)
        mc_request(keys, next_rand() % 10 == 0);
    window_start();
    for (int i = 0; i < requests; i++)
        mc_request(keys, next_rand() % 10 == 0);
    window_stop();
    close(mc_fd);
    printf("memcache: %d requests\n", requests);
    return 0;
}

/* ---- module load and unload ------------------------------------------------------------ */
static void load_unload(const char *file, const char *name, const char *args)
{
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        die("open module");
    if (syscall(SYS_finit_module, fd, args, 0) != 0)
        die("finit_module");
    close(fd);
    if (syscall(SYS_delete_module, name, O_NONBLOCK) != 0)
        die("delete_module");
}

static int cmd_module(const char *file, const char *name, const char *args)
{
    load_unload(file, name, args);  /* warm-up */
    window_start();
    load_unload(file, name, args);
    window_stop();
    printf("module: %s loaded and unloaded\n", name);
    return 0;
}

/* ---- BPF program load and run ---------------------------------------------------------- */
static long bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* A socket filter: sums the first 16 words of the packet in a loop-free sequence and
 * returns the sum's low bit ORed with the length, so the verifier and JIT do real work. */
static int bpf_load_run(int repeat)
{
    struct bpf_insn prog[64];
    int n = 0;
#define INSN(c, d, s, o, i) (prog[n++] = (struct bpf_insn){.code = (c), .dst_reg = (d), \
                                                            .src_reg = (s), .off = (o), .imm = (i)})
    INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0);          /* r6 = ctx (skb) */
    INSN(BPF_ALU64 | BPF_MOV | BPF_K, 7, 0, 0, 0);          /* r7 = 0 */
    for (int k = 0; k < 16; k++) {
        INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 4 * k);      /* r0 = ntohl(pkt[4k]) */
        INSN(BPF_ALU64 | BPF_ADD | BPF_X, 7, 0, 0, 0);      /* r7 += r0 */
        INSN(BPF_ALU64 | BPF_RSH | BPF_K, 7, 0, 0, 1);      /* r7 >>= 1 */
    }
    INSN(BPF_ALU64 | BPF_MOV | BPF_X, 0, 7, 0, 0);
    INSN(BPF_ALU64 | BPF_AND | BPF_K, 0, 0, 0, 1);
    INSN(BPF_ALU64 | BPF_OR | BPF_K, 0, 0, 0, 64);
    INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
#undef INSN
    static char log[4096];
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uint64_t)(uintptr_t)prog;
    attr.insn_cnt = (uint32_t)n;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    int fd = (int)bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0) {                   /* load again with the verifier's log, to show why */
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = sizeof log;
        attr.log_level = 1;
        bpf(BPF_PROG_LOAD, &attr);
        fprintf(stderr, "%s\n", log);
        die("BPF_PROG_LOAD");
    }
    static unsigned char pkt[128];
    for (unsigned i = 0; i < sizeof pkt; i++)
        pkt[i] = (unsigned char)(i * 37 + 1);
    memset(&attr, 0, sizeof attr);
    attr.test.prog_fd = (uint32_t)fd;
    attr.test.data_in = (uint64_t)(uintptr_t)pkt;
    attr.test.data_size_in = sizeof pkt;
    attr.test.repeat = (uint32_t)repeat;
    if (bpf(BPF_PROG_TEST_RUN, &attr) != 0)
        die("BPF_PROG_TEST_RUN");
    int ret = (int)attr.test.retval;
    close(fd);
    return ret;
}

static int cmd_bpf(int repeat)
{
    bpf_load_run(repeat);           /* warm-up */
    window_start();
    int r = bpf_load_run(repeat);
    window_stop();
    printf("bpf: retval %d\n", r);
    return 0;
}

/* ---- first touch of fresh memory ------------------------------------------------------- */
static int cmd_touch(int mib)
{
    size_t len = (size_t)mib << 20;
    window_start();
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap");
    for (size_t off = 0; off < len; off += 4096)
        m[off] = 1;
    for (int i = 0; i < 50; i++)
        syscall(SYS_getppid);
    munmap(m, len);
    window_stop();
    printf("touch: %d MiB\n", mib);
    return 0;
}

/* ---- kernel variables through /proc/kcore ---------------------------------------------- */
static int kcore_read(int fd, const Elf64_Phdr *ph, int nph, uint64_t va, unsigned char *out,
                      size_t len)
{
    for (int i = 0; i < nph; i++) {
        if (ph[i].p_type != PT_LOAD || va < ph[i].p_vaddr || va + len > ph[i].p_vaddr + ph[i].p_memsz)
            continue;
        off_t off = (off_t)(ph[i].p_offset + (va - ph[i].p_vaddr));
        return pread(fd, out, len, off) == (ssize_t)len ? 0 : -1;
    }
    return -1;
}

static int cmd_peek(int argc, char **argv)
{
    int fd = open("/proc/kcore", O_RDONLY);
    if (fd < 0)
        die("open /proc/kcore");
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != sizeof eh)
        die("kcore header");
    static Elf64_Phdr ph[256];
    int nph = eh.e_phnum < 256 ? eh.e_phnum : 256;
    if (pread(fd, ph, sizeof ph[0] * (size_t)nph, (off_t)eh.e_phoff) != (ssize_t)(sizeof ph[0] * (size_t)nph))
        die("kcore program headers");
    for (int i = 0; i < nph; i++)
        if (ph[i].p_type == PT_LOAD)
            printf("kcore %llx %llx %llx\n", (unsigned long long)ph[i].p_vaddr,
                   (unsigned long long)ph[i].p_paddr, (unsigned long long)ph[i].p_memsz);
    FILE *ks = fopen("/proc/kallsyms", "r");
    if (!ks)
        die("open /proc/kallsyms");
    char line[512];
    for (int i = 0; i < argc; i++) {
        char want[128];
        unsigned long bytes = 8;
        const char *colon = strchr(argv[i], ':');
        size_t wl = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
        if (wl >= sizeof want)
            continue;
        memcpy(want, argv[i], wl);
        want[wl] = 0;
        if (colon)
            bytes = strtoul(colon + 1, NULL, 0);
        if (bytes > 4096)
            bytes = 4096;
        rewind(ks);
        unsigned long long addr = 0;
        int found = 0;
        if (want[0] == '0' && want[1] == 'x') {     /* an address, not a name */
            addr = strtoull(want, NULL, 16);
            found = 1;
        }
        while (!found && fgets(line, sizeof line, ks)) {
            char type, name[256];
            if (sscanf(line, "%llx %c %255s", &addr, &type, name) == 3 && !strcmp(name, want))
                found = 1;
        }
        if (!found) {
            printf("peek %s missing\n", want);
            continue;
        }
        static unsigned char b[4096];
        if (kcore_read(fd, ph, nph, addr, b, bytes) != 0) {
            printf("peek %s %llx unreadable\n", want, addr);
            continue;
        }
        printf("peek %s %llx ", want, addr);
        for (unsigned long k = 0; k < bytes; k++)
            printf("%02x", b[k]);
        printf("\n");
    }
    fclose(ks);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    debug = getenv("KMMWORK_DEBUG") != NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: kmmwork COMMAND ...\n");
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "true"))
        return 0;
    if (!strcmp(c, "syscalls") && argc == 3)
        return cmd_syscalls(argv[0], atoi(argv[2]));
    if (!strcmp(c, "read") && argc == 3)
        return cmd_read(argv[2]);
    if (!strcmp(c, "ddwrite") && argc == 4)
        return cmd_ddwrite(argv[2], atoi(argv[3]));
    if (!strcmp(c, "memcache") && argc == 4)
        return cmd_memcache(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(c, "module") && (argc == 4 || argc == 5))
        return cmd_module(argv[2], argv[3], argc == 5 ? argv[4] : "");
    if (!strcmp(c, "bpf") && argc == 3)
        return cmd_bpf(atoi(argv[2]));
    if (!strcmp(c, "touch") && argc == 3)
        return cmd_touch(atoi(argv[2]));
    if (!strcmp(c, "peek"))
        return cmd_peek(argc - 2, argv + 2);
    fprintf(stderr, "kmmwork: unknown command or arguments: %s\n", c);
    return 2;
}
