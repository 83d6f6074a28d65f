//! The OS-facing readers that need no eBPF: `/proc/net/tcp{,6}`, socket owners, sock_diag.
