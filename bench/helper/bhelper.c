/*
 * bhelper: the reference guest's timing tool for `make bench` (static, no libaio).
 *
 * busybox `dd iflag=direct` silently falls back to buffered reads at 512 B, so the
 * Linux side times its block I/O here: O_DIRECT reads at a given request size and
 * depth (depth > 1 through Linux native AIO, raw io_setup/io_submit/io_getevents
 * syscalls), an O_DIRECT sequential write ended by fsync, and a UDP echo server.
 *
 * Every read is checked against the disk pattern (bench/pattern.py describes it):
 * each 512-byte sector starts with its sector number and a magic word, and the
 * first sector of every request is compared byte for byte. A wrong answer is
 * counted in bad=, and the host rejects a run with bad != 0.
 *
 * Only the I/O calls are timed (preparing and checking buffers is not), the same
 * rule the MicroPython side follows. Output: one line
 *   RESULT op=read bs=4096 depth=32 mode=rand ops=N bytes=N ns=N bad=N
 *
 * usage:
 *   bhelper read  PATH BS DEPTH seq|rand REGION_BYTES MAX_OPS MAX_MS [buffered]
 *   bhelper write PATH BS OFFSET TOTAL_BYTES
 *   bhelper udpecho PORT
 *   bhelper fswrite FILE BS TOTAL_BYTES   a file on a mounted file system, then fsync
 *   bhelper fsread  FILE BS TOTAL_BYTES   read it back (the script drops caches first)
 *   bhelper fsfiles DIR COUNT SIZE        COUNT files of SIZE bytes in 10 folders, then sync
 *
 * The file workloads' data (bench/guest/ours_fs.py writes the same): chunk k of BS bytes
 * starts with k (u32) and FILE_MAGIC; byte i >= 8 of every chunk is (i * 7 + 0x33) & 0xff.
 *   bhelper tcpecho HOST PORT BYTES SEED   (a client: sends BYTES of a seeded stream to an
 *       echo server, checks every byte that comes back; tests/qemu/test_tcp_peer.py)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512
#define STAMP_LEN 8
#define READ_MAGIC 0x48434e42u  /* "BNCH" little-endian: the image as the host made it */
#define WRITE_MAGIC 0x54495257u /* "WRIT": what the write workload puts down */
#define READ_SALT 0
#define WRITE_SALT 0x5a
#define MAX_DEPTH 256

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Byte i of sector s (i >= 8) is (s * 131 + salt + i) & 0xff. */
static void fill_sector(unsigned char *p, uint64_t s, uint32_t magic, unsigned salt)
{
    uint32_t lo = (uint32_t)s;
    unsigned base = (unsigned)((s * 131 + salt) & 0xff);
    memcpy(p, &lo, 4);
    memcpy(p + 4, &magic, 4);
    for (int i = STAMP_LEN; i < SECTOR; i++)
        p[i] = (unsigned char)((base + i) & 0xff);
}

/* Count wrong sectors in buf, read from byte offset off: every stamp, first sector whole. */
static long check(const unsigned char *buf, size_t len, uint64_t off)
{
    long bad = 0;
    uint64_t s0 = off / SECTOR;
    unsigned char want[SECTOR];
    for (size_t k = 0; k < len / SECTOR; k++) {
        uint32_t got[2];
        memcpy(got, buf + k * SECTOR, 8);
        if (got[0] != (uint32_t)(s0 + k) || got[1] != READ_MAGIC)
            bad++;
    }
    fill_sector(want, s0, READ_MAGIC, READ_SALT);
    if (memcmp(want, buf, SECTOR) != 0)
        bad++;
    return bad;
}

/* Offsets: sequential wrapping over the region, or a 64-bit LCG's aligned picks. */
struct offsets {
    int random;
    uint64_t next, bs, nblocks, state;
};

static uint64_t next_offset(struct offsets *o)
{
    uint64_t b;
    if (o->random) {
        o->state = o->state * 6364136223846793005ull + 1442695040888963407ull;
        b = (o->state >> 33) % o->nblocks;
    } else {
        b = o->next;
        o->next = (o->next + 1) % o->nblocks;
    }
    return b * o->bs;
}

static void *aligned(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n) != 0) {
        fprintf(stderr, "bhelper: out of memory for %zu bytes\n", n);
        exit(2);
    }
    memset(p, 0, n);
    return p;
}

static int open_or_die(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0) {
        fprintf(stderr, "bhelper: open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return fd;
}

static int submit(aio_context_t ctx, struct iocb **ptrs, int n)
{
    while (n > 0) {
        long r = syscall(SYS_io_submit, ctx, n, ptrs);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            fprintf(stderr, "bhelper: io_submit: %s\n", r < 0 ? strerror(errno) : "none taken");
            return -1;
        }
        ptrs += r;
        n -= (int)r;
    }
    return 0;
}

static int cmd_read(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: bhelper read PATH BS DEPTH seq|rand REGION MAX_OPS MAX_MS [buffered]\n");
        return 2;
    }
    const char *path = argv[2];
    uint64_t bs = strtoull(argv[3], NULL, 0);
    int depth = atoi(argv[4]);
    int random = strcmp(argv[5], "rand") == 0;
    uint64_t region = strtoull(argv[6], NULL, 0);
    uint64_t max_ops = strtoull(argv[7], NULL, 0);
    uint64_t max_ns = strtoull(argv[8], NULL, 0) * 1000000ull;
    int buffered = argc > 9 && strcmp(argv[9], "buffered") == 0;
    if (bs < SECTOR || bs % SECTOR || depth < 1 || depth > MAX_DEPTH || region < bs) {
        fprintf(stderr, "bhelper: bad read arguments\n");
        return 2;
    }
    int fd = open_or_die(path, O_RDONLY | (buffered ? 0 : O_DIRECT));
    struct offsets o = {random, 0, bs, region / bs, 0x2545f4914f6cdd1dull};
    uint64_t ops = 0, issued = 0, busy_ns = 0;
    long bad = 0;

    if (depth == 1) {
        unsigned char *buf = aligned(bs);
        while (ops < max_ops && busy_ns < max_ns) {
            uint64_t off = next_offset(&o);
            uint64_t t0 = now_ns();
            ssize_t n = pread(fd, buf, bs, (off_t)off);
            busy_ns += now_ns() - t0;
            if (n != (ssize_t)bs) {
                fprintf(stderr, "bhelper: pread at %llu: %zd\n", (unsigned long long)off, n);
                bad++;
                break;
            }
            bad += check(buf, bs, off);
            ops++;
        }
    } else {
        /* Native AIO: keep `depth` requests in flight, refill as each completes. */
        aio_context_t ctx = 0;
        struct iocb cbs[MAX_DEPTH], *ptrs[MAX_DEPTH];
        struct io_event ev[MAX_DEPTH];
        unsigned char *bufs = aligned(bs * (uint64_t)depth);
        if (syscall(SYS_io_setup, depth, &ctx) < 0) {
            fprintf(stderr, "bhelper: io_setup: %s\n", strerror(errno));
            return 2;
        }
        memset(cbs, 0, sizeof(cbs));
        int inflight = 0;
        uint64_t t0 = now_ns();
        for (int i = 0; i < depth && issued < max_ops; i++) {
            cbs[i].aio_data = (uint64_t)i;
            cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
            cbs[i].aio_fildes = (uint32_t)fd;
            cbs[i].aio_buf = (uint64_t)(uintptr_t)(bufs + (uint64_t)i * bs);
            cbs[i].aio_nbytes = bs;
            cbs[i].aio_offset = (int64_t)next_offset(&o);
            ptrs[inflight++] = &cbs[i];
            issued++;
        }
        if (submit(ctx, ptrs, inflight) != 0)
            return 2;
        while (inflight > 0) {
            long n = syscall(SYS_io_getevents, ctx, 1, MAX_DEPTH, ev, NULL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "bhelper: io_getevents: %s\n", strerror(errno));
                return 2;
            }
            int stop = now_ns() - t0 >= max_ns, again = 0;
            for (long k = 0; k < n; k++) {
                struct iocb *cb = &cbs[ev[k].data];
                inflight--;
                if (ev[k].res != (int64_t)bs) {
                    fprintf(stderr, "bhelper: aio read at %lld: %lld\n",
                            (long long)cb->aio_offset, (long long)ev[k].res);
                    bad++;
                    stop = 1;
                } else {
                    bad += check((unsigned char *)(uintptr_t)cb->aio_buf, bs,
                                 (uint64_t)cb->aio_offset);
                    ops++;
                }
                if (!stop && issued < max_ops) {
                    cb->aio_offset = (int64_t)next_offset(&o);
                    ptrs[again++] = cb;
                    issued++;
                }
            }
            /* Refill all completed slots with one io_submit, as a real AIO user would. */
            if (again && submit(ctx, ptrs, again) != 0)
                return 2;
            inflight += again;
        }
        busy_ns = now_ns() - t0;
        syscall(SYS_io_destroy, ctx);
    }
    printf("RESULT op=read bs=%llu depth=%d mode=%s ops=%llu bytes=%llu ns=%llu bad=%ld\n",
           (unsigned long long)bs, depth, random ? "rand" : "seq", (unsigned long long)ops,
           (unsigned long long)(ops * bs), (unsigned long long)busy_ns, bad);
    close(fd);
    return bad ? 1 : 0;
}

static int cmd_write(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bhelper write PATH BS OFFSET TOTAL_BYTES\n");
        return 2;
    }
    const char *path = argv[2];
    uint64_t bs = strtoull(argv[3], NULL, 0);
    uint64_t start = strtoull(argv[4], NULL, 0);
    uint64_t total = strtoull(argv[5], NULL, 0);
    if (bs < SECTOR || bs % SECTOR || start % SECTOR || total % bs) {
        fprintf(stderr, "bhelper: bad write arguments\n");
        return 2;
    }
    int fd = open_or_die(path, O_WRONLY | O_DIRECT);
    unsigned char *buf = aligned(bs);
    uint64_t busy_ns = 0, ops = 0;
    long bad = 0;
    for (uint64_t off = start; off < start + total; off += bs) {
        for (uint64_t k = 0; k < bs / SECTOR; k++)
            fill_sector(buf + k * SECTOR, off / SECTOR + k, WRITE_MAGIC, WRITE_SALT);
        uint64_t t0 = now_ns();
        ssize_t n = pwrite(fd, buf, bs, (off_t)off);
        busy_ns += now_ns() - t0;
        if (n != (ssize_t)bs) {
            fprintf(stderr, "bhelper: pwrite at %llu: %zd\n", (unsigned long long)off, n);
            bad++;
            break;
        }
        ops++;
    }
    uint64_t t0 = now_ns();
    if (fsync(fd) != 0) {
        fprintf(stderr, "bhelper: fsync: %s\n", strerror(errno));
        bad++;
    }
    busy_ns += now_ns() - t0;
    printf("RESULT op=write bs=%llu depth=1 mode=seq ops=%llu bytes=%llu ns=%llu bad=%ld\n",
           (unsigned long long)bs, (unsigned long long)ops, (unsigned long long)(ops * bs),
           (unsigned long long)busy_ns, bad);
    close(fd);
    return bad ? 1 : 0;
}

/* Echo every datagram back to its sender until one reads "BENCH-QUIT". */
static int cmd_udpecho(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bhelper udpecho PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[2]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, "bhelper: udp bind: %s\n", strerror(errno));
        return 2;
    }
    printf("UDPECHO READY\n");
    fflush(stdout);
    static unsigned char buf[65536];
    unsigned long count = 0;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "bhelper: recvfrom: %s\n", strerror(errno));
            return 2;
        }
        if (n == 10 && memcmp(buf, "BENCH-QUIT", 10) == 0) {
            sendto(s, "BYE", 3, 0, (struct sockaddr *)&peer, pl);
            break;
        }
        sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&peer, pl);
        count++;
    }
    printf("RESULT op=udpecho count=%lu\n", count);
    return 0;
}

/* ---- file workloads (docs/files.md; ours: bench/guest/ours_fs.py) ---- */
#define FILE_MAGIC 0x454c4946u  /* "FILE" */

static void fill_chunk(unsigned char *p, uint64_t bs, uint32_t k)
{
    uint32_t magic = FILE_MAGIC;
    for (uint64_t i = STAMP_LEN; i < bs; i++)
        p[i] = (unsigned char)((i * 7 + 0x33) & 0xff);
    memcpy(p, &k, 4);
    memcpy(p + 4, &magic, 4);
}

static int cmd_fswrite(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bhelper fswrite FILE BS TOTAL_BYTES\n");
        return 2;
    }
    uint64_t bs = strtoull(argv[3], NULL, 0), total = strtoull(argv[4], NULL, 0);
    unsigned char *buf = aligned(bs);
    uint64_t t0 = now_ns(), ops = 0;
    long bad = 0;
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "bhelper: open %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    uint64_t busy_ns = now_ns() - t0;
    for (uint64_t off = 0; off < total; off += bs) {
        fill_chunk(buf, bs, (uint32_t)(off / bs));
        t0 = now_ns();
        ssize_t n = write(fd, buf, bs);
        busy_ns += now_ns() - t0;
        if (n != (ssize_t)bs) {
            bad++;
            break;
        }
        ops++;
    }
    t0 = now_ns();
    if (fsync(fd) != 0 || close(fd) != 0)
        bad++;
    busy_ns += now_ns() - t0;
    printf("RESULT op=fswrite bs=%llu ops=%llu bytes=%llu ns=%llu bad=%ld\n",
           (unsigned long long)bs, (unsigned long long)ops, (unsigned long long)(ops * bs),
           (unsigned long long)busy_ns, bad);
    return bad ? 1 : 0;
}

static int cmd_fsread(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bhelper fsread FILE BS TOTAL_BYTES\n");
        return 2;
    }
    uint64_t bs = strtoull(argv[3], NULL, 0), total = strtoull(argv[4], NULL, 0);
    unsigned char *buf = aligned(bs), *want = aligned(bs);
    uint64_t t0 = now_ns(), ops = 0;
    long bad = 0;
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "bhelper: open %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    uint64_t busy_ns = now_ns() - t0;
    for (uint64_t off = 0; off < total; off += bs) {
        t0 = now_ns();
        ssize_t n = read(fd, buf, bs);
        busy_ns += now_ns() - t0;
        fill_chunk(want, bs, (uint32_t)(off / bs));
        if (n != (ssize_t)bs || memcmp(buf, want, bs) != 0) {
            bad++;
            if (n != (ssize_t)bs)
                break;
        }
        ops++;
    }
    close(fd);
    printf("RESULT op=fsread bs=%llu ops=%llu bytes=%llu ns=%llu bad=%ld\n",
           (unsigned long long)bs, (unsigned long long)ops, (unsigned long long)(ops * bs),
           (unsigned long long)busy_ns, bad);
    return bad ? 1 : 0;
}

static int cmd_fsfiles(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bhelper fsfiles DIR COUNT SIZE\n");
        return 2;
    }
    const char *dir = argv[2];
    long count = atol(argv[3]), size = atol(argv[4]), bad = 0, made = 0;
    char path[512], body[4096];
    if (size > (long)sizeof(body))
        size = sizeof(body);
    for (long i = 0; i < size; i++)
        body[i] = (char)('a' + i % 26);
    uint64_t t0 = now_ns();
    for (int d = 0; d < 10; d++) {
        snprintf(path, sizeof(path), "%s/d%d", dir, d);
        if (mkdir(path, 0755) != 0)
            bad++;
    }
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "%s/d%ld/f%04ld", dir, i % 10, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, body, (size_t)size) != size || close(fd) != 0) {
            bad++;
            continue;
        }
        made++;
    }
    sync();
    uint64_t busy_ns = now_ns() - t0;
    printf("RESULT op=fsfiles bs=%ld ops=%ld bytes=%ld ns=%llu bad=%ld\n",
           size, made, made * size, (unsigned long long)busy_ns, bad);
    return bad ? 1 : 0;
}

/* The stream tcpecho sends: the high byte of a 32-bit LCG (Numerical Recipes constants). */
static unsigned char stream_byte(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (unsigned char)(*state >> 24);
}

static int connect_retry(const char *host, int port, int seconds)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    for (int i = 0; i < seconds * 10; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
            return s;
        if (s >= 0)
            close(s);
        usleep(100000);       /* the server's guest may still be booting */
    }
    return -1;
}

/* Send BYTES of the seeded stream while reading the echo; compare every byte. */
static int cmd_tcpecho(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bhelper tcpecho HOST PORT BYTES SEED\n");
        return 2;
    }
    uint64_t total = strtoull(argv[4], NULL, 0);
    uint32_t tx_state = (uint32_t)strtoul(argv[5], NULL, 0), rx_state = tx_state;
    int s = connect_retry(argv[2], atoi(argv[3]), 120);
    if (s < 0) {
        fprintf(stderr, "bhelper: connect %s:%s: %s\n", argv[2], argv[3], strerror(errno));
        return 2;
    }
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    static unsigned char out[16384], in[16384];
    size_t out_len = 0, out_off = 0;
    uint64_t sent = 0, got = 0, bad = 0, t0 = now_ns();
    int shut = 0, ok = 1;
    while (got < total) {
        struct pollfd p = {s, POLLIN | (sent < total ? POLLOUT : 0), 0};
        int r = poll(&p, 1, 120000);
        if (r <= 0) {
            fprintf(stderr, "bhelper: no progress for 120 s\n");
            ok = 0;
            break;
        }
        if ((p.revents & POLLOUT) && sent < total) {
            if (out_off == out_len) {
                out_len = total - sent < sizeof(out) ? (size_t)(total - sent) : sizeof(out);
                for (size_t i = 0; i < out_len; i++)
                    out[i] = stream_byte(&tx_state);
                out_off = 0;
            }
            ssize_t n = send(s, out + out_off, out_len - out_off, 0);
            if (n > 0) {
                out_off += (size_t)n;
                sent += (uint64_t)n;
            }
        }
        if (sent == total && !shut) {
            shutdown(s, SHUT_WR);
            shut = 1;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(s, in, sizeof(in), 0);
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                fprintf(stderr, "bhelper: recv: %s\n", strerror(errno));
                ok = 0;
                break;
            }
            for (ssize_t i = 0; i < n; i++)
                if (in[i] != stream_byte(&rx_state))
                    bad++;
            got += (uint64_t)n;
        }
    }
    printf("RESULT op=tcpecho sent=%llu bytes=%llu bad=%llu ns=%llu\n",
           (unsigned long long)sent, (unsigned long long)got, (unsigned long long)bad,
           (unsigned long long)(now_ns() - t0));
    close(s);
    return ok && !bad && got == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "read") == 0)
        return cmd_read(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "write") == 0)
        return cmd_write(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "udpecho") == 0)
        return cmd_udpecho(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "fswrite") == 0)
        return cmd_fswrite(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "fsread") == 0)
        return cmd_fsread(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "fsfiles") == 0)
        return cmd_fsfiles(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "tcpecho") == 0)
        return cmd_tcpecho(argc, argv);
    fprintf(stderr, "usage: bhelper read|write|udpecho|fswrite|fsread|fsfiles|tcpecho ...\n");
    return 2;
}
