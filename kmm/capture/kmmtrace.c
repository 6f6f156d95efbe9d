/*
 * kmmtrace: a QEMU TCG plugin (plugin API version 1, QEMU 7.2) that records every guest
 * instruction fetch, load and store inside a measured window.
 *
 * The window opens on the first kernel-mode access (instruction address with bit 63 set) to
 * the start marker page and closes on the first kernel-mode access to the stop marker page:
 * kmm's guest program passes those pages as the path argument of faccessat(2), so the
 * kernel's strncpy_from_user() is the only code that touches them at EL1.
 *
 * Arguments: out=FILE start=VA stop=VA [max=N]
 *
 * Output: a 32-byte header "KMMRAW1\n", u64 record count, u64 flags (bit 0: stopped at max),
 * u64 vcpus; then 24-byte little-endian records {u64 va; u64 pa; u32 info; u32 pc_lo},
 * info = kind (bits 0-1: 0 load, 1 store, 2 fetch) | size_log2 << 2 | has_pa << 5 |
 * is_io << 6 | vcpu << 8. pc_lo is the low 32 bits of the instruction that made a data access.
 *
 * The declarations below are written from the plugin API documentation of QEMU 7.2; QEMU's
 * own header is not used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stddef.h>

#define KMM_EXPORT __attribute__((visibility("default")))

/* ---- plugin API v1 declarations (QEMU 7.2 docs/devel/tcg-plugins.rst) ---- */
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_hwaddr;

typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr);
bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr);
uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr);
void qemu_plugin_outs(const char *string);
/* ---- end of declarations ---- */

KMM_EXPORT int qemu_plugin_version = 1;

struct rec { uint64_t va, pa; uint32_t info, pc_lo; };

/* One per translated instruction; translations are kept for the life of the process (the
 * memory is bounded by the guest code translated, a few tens of MiB at most). */
struct insn { uint64_t va; uint32_t size_log2; };

#define BUF_RECS (1u << 16)
static struct rec buf[BUF_RECS];
static unsigned nbuf;
static FILE *out;
static uint64_t start_page, stop_page, max_recs = 50000000, nrecs;
static int state;                   /* 0 before the window, 1 inside, 2 after */
static int truncated;
static uint64_t vcpus;

static void flush(void)
{
    if (nbuf && fwrite(buf, sizeof buf[0], nbuf, out) != nbuf) {
        qemu_plugin_outs("kmmtrace: write failed\n");
        exit(70);
    }
    nbuf = 0;
}

static inline void emit(uint64_t va, uint64_t pa, uint32_t info, uint32_t pc_lo)
{
    if (nrecs >= max_recs) {
        truncated = 1;
        state = 2;
        return;
    }
    buf[nbuf].va = va;
    buf[nbuf].pa = pa;
    buf[nbuf].info = info;
    buf[nbuf].pc_lo = pc_lo;
    nrecs++;
    if (++nbuf == BUF_RECS)
        flush();
}

static void on_insn(unsigned int vcpu, void *udata)
{
    const struct insn *in = udata;
    if (state == 1)
        emit(in->va, 0, 2u | (in->size_log2 << 2) | (vcpu << 8), 0);
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    const struct insn *in = udata;
    if (in->va >> 63) {             /* a kernel-mode instruction: check the markers */
        uint64_t page = vaddr & ~(uint64_t)4095;
        if (page == start_page && state == 0)
            state = 1;
        else if (page == stop_page && state == 1)
            state = 2;
    }
    if (state != 1)
        return;
    uint32_t rec = qemu_plugin_mem_is_store(info) ? 1u : 0u;
    rec |= (qemu_plugin_mem_size_shift(info) & 7u) << 2;
    rec |= vcpu << 8;
    uint64_t pa = 0;
    struct qemu_plugin_hwaddr *hw = qemu_plugin_get_hwaddr(info, vaddr);
    if (hw) {
        pa = qemu_plugin_hwaddr_phys_addr(hw);
        rec |= 1u << 5;
        if (qemu_plugin_hwaddr_is_io(hw))
            rec |= 1u << 6;
    }
    emit(vaddr, pa, rec, (uint32_t)in->va);
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        struct insn *in = malloc(sizeof *in);
        if (!in)
            abort();
        in->va = qemu_plugin_insn_vaddr(insn);
        size_t sz = qemu_plugin_insn_size(insn);
        in->size_log2 = sz >= 4 ? 2 : (sz >= 2 ? 1 : 0);
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn, QEMU_PLUGIN_CB_NO_REGS, in);
        qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_RW, in);
    }
}

static void write_header(void)
{
    char head[32] = "KMMRAW1\n";
    uint64_t flags = (uint64_t)truncated | ((uint64_t)(state != 0) << 1);
    memcpy(head + 8, &nrecs, 8);
    memcpy(head + 16, &flags, 8);
    memcpy(head + 24, &vcpus, 8);
    fseek(out, 0, SEEK_SET);
    fwrite(head, 1, sizeof head, out);
}

static void on_exit_cb(qemu_plugin_id_t id, void *p)
{
    flush();
    write_header();
    fclose(out);
}

KMM_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                   int argc, char **argv)
{
    const char *path = NULL;
    if (!info->system_emulation) {
        qemu_plugin_outs("kmmtrace: needs full-system emulation\n");
        return -1;
    }
    vcpus = (uint64_t)info->system.smp_vcpus;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "out=", 4))
            path = a + 4;
        else if (!strncmp(a, "start=", 6))
            start_page = strtoull(a + 6, NULL, 0) & ~(uint64_t)4095;
        else if (!strncmp(a, "stop=", 5))
            stop_page = strtoull(a + 5, NULL, 0) & ~(uint64_t)4095;
        else if (!strncmp(a, "max=", 4))
            max_recs = strtoull(a + 4, NULL, 0);
        else {
            qemu_plugin_outs("kmmtrace: unknown argument\n");
            return -1;
        }
    }
    if (!path || !start_page || !stop_page) {
        qemu_plugin_outs("kmmtrace: needs out=, start= and stop=\n");
        return -1;
    }
    out = fopen(path, "wb");
    if (!out)
        return -1;
    write_header();
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
