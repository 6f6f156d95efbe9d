"""The NUMA host model shared by kernel text replication (:mod:`kmm.mech.ktr`) and
pKVM stage 2 (:mod:`kmm.mech.pkvm`): the kernel image and its tables, text patching,
kernel/user phase mixes run through the full path, and time as a formula over counts."""
