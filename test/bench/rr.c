// SPDX-License-Identifier: Apache-2.0
// The per-packet and per-connection workloads of datapath.bench.ts (compiled at bench start with
// clang-14 -O2 into a temp dir). Each mode prints one line of numbers on stdout.
//   udp-sink IP PORT WAIT       count datagrams until 300 ms idle after the first (or WAIT s with none): "COUNT"
//   udp-flood IP PORT SECONDS   send 64-byte datagrams flat out: "SENT"
//   rr-server IP PORT           per connection: read 64 bytes, write 64 bytes, until EOF (forever)
//   rr-client IP PORT SECONDS   one connection, TCP_NODELAY, one transaction outstanding: "TRANSACTIONS"
//   crr-server IP PORT          per connection: read 64, write 64, close (forever)
//   crr-client IP PORT SECONDS  connect, write 64, read 64 and EOF, close, in a loop: "CONNECTIONS"
//   tcp-probe IP PORT           exit 0 if a connection is made within 1 s, else 1
// Servers print "ready" once listening.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static struct sockaddr_in addr(const char *ip, const char *port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", ip);
    exit(2);
  }
  return a;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static int full(int fd, char *buf, int n, int reading) {
  int done = 0;
  while (done < n) {
    ssize_t r = reading ? read(fd, buf + done, n - done) : write(fd, buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    done += r;
  }
  return 0;
}

static int listener(struct sockaddr_in a) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(s, 4096) < 0) die("listen");
  printf("ready\n");
  fflush(stdout);
  return s;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: rr MODE IP PORT [SECONDS]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const char *mode = argv[1];
  struct sockaddr_in a = addr(argv[2], argv[3]);
  double secs = argc > 4 ? atof(argv[4]) : 0;
  char buf[MSG];
  memset(buf, 'x', sizeof buf);
  int one = 1;

  if (!strcmp(mode, "udp-sink")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int rcv = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    printf("ready\n");
    fflush(stdout);
    long count = 0;
    struct pollfd p = {.fd = s, .events = POLLIN};
    // Wait up to SECONDS for the first datagram, then until 300 ms pass without one.
    if (poll(&p, 1, (int)(secs * 1000)) <= 0) {
      printf("0\n");
      return 0;
    }
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    static char bufs[64][2048];
    for (int i = 0; i < 64; i++) {
      iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
      msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    for (;;) {
      int n = recvmmsg(s, msgs, 64, MSG_DONTWAIT, NULL);
      if (n > 0) {
        count += n;
        continue;
      }
      if (poll(&p, 1, 300) <= 0) break;
    }
    printf("%ld\n", count);
    return 0;
  }
  if (!strcmp(mode, "udp-flood")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    long sent = 0;
    double end = now() + secs;
    while (1) {
      for (int i = 0; i < 256; i++)
        if (send(s, buf, MSG, 0) == MSG) sent++;
      if (now() >= end) break;
    }
    printf("%ld\n", sent);
    return 0;
  }
  if (!strcmp(mode, "rr-server") || !strcmp(mode, "crr-server")) {
    int crr = mode[0] == 'c';
    int l = listener(a);
    signal(SIGCHLD, SIG_IGN); // no zombies from the rr children
    for (;;) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (crr) {
        if (full(c, buf, MSG, 1) == 0) full(c, buf, MSG, 0);
        close(c);
        continue;
      }
      // One client at a time (the bench runs one); a child per connection keeps accept free.
      if (fork() == 0) {
        close(l);
        while (full(c, buf, MSG, 1) == 0 && full(c, buf, MSG, 0) == 0) {
        }
        _exit(0);
      }
      close(c);
    }
  }
  if (!strcmp(mode, "rr-client")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    long n = 0;
    double end = now() + secs;
    while (1) {
      for (int i = 0; i < 64; i++) {
        if (full(s, buf, MSG, 0) || full(s, buf, MSG, 1)) die("rr");
        n++;
      }
      if (now() >= end) break;
    }
    printf("%ld\n", n);
    return 0;
  }
  if (!strcmp(mode, "crr-client")) {
    long n = 0, failed = 0;
    double end = now() + secs;
    while (now() < end) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(s, (struct sockaddr *)&a, sizeof a) == 0 && full(s, buf, MSG, 0) == 0 && full(s, buf, MSG, 1) == 0 && read(s, buf, 1) == 0)
        n++;
      else
        failed++;
      close(s);
    }
    printf("%ld %ld\n", n, failed);
    return 0;
  }
  if (!strcmp(mode, "tcp-probe")) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(s, (struct sockaddr *)&a, sizeof a);
    struct pollfd p = {.fd = s, .events = POLLOUT};
    int err = 1;
    socklen_t len = sizeof err;
    if (poll(&p, 1, 1000) == 1) getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
    return err == 0 ? 0 : 1;
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
