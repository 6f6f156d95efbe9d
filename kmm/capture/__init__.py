"""Capture real arm64 kernel memory-reference traces: a pinned Debian kernel under QEMU TCG
with kmm's own plugin (``kmmtrace.c``), scenarios run by a generated initramfs
(``kmmwork.c``), every reference attributed to a region of that kernel's layout, stored as
``.kmmt`` files read by :func:`kmm.traces.read_kernel_trace`."""
