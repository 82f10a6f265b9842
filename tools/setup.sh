#!/usr/bin/env bash
# Prepares a Debian host (as root) for building the BPF objects and running every test tier:
# pinned clang-14 toolchain, bpftool (test cross-checks), iperf3 (throughput benchmark),
# iproute2 and git, systemd-analyze (unit verification), zsh and fish (the completion scripts are
# parsed and run by each shell), and a mounted bpffs.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (the kernel tests need CAP_BPF and CAP_NET_ADMIN)" >&2
  exit 1
fi

missing=()
for tool in clang-14 llvm-strip-14 bpftool iperf3 ip tc git ssh-keygen systemd-analyze strace nft zsh fish; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf-dev")
if ((${#missing[@]})); then
  echo "setup: installing packages for: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    clang-14 llvm-14 bpftool libbpf-dev linux-libc-dev iperf3 iproute2 git openssh-client systemd strace nftables zsh fish
fi

# Programs and maps are pinned below /sys/fs/bpf.
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
  mount -t bpf bpf /sys/fs/bpf
fi
mkdir -p /run/netns
echo "setup: ok"
