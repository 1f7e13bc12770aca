/* The machine's floor, measured in the same run as the servers (benches/compare.sh):
 *   probe fsync DIR N   -- N appends of 1 KiB, each followed by fdatasync
 *   probe rtt N         -- N one-byte round trips over loopback TCP (TCP_NODELAY)
 * Prints one JSON line with p50/p99 in microseconds. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    printf("{\"probe\":\"%s\",\"n\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", what, n,
           v[n / 2], v[(int)(n * 0.99)]);
}

static void die(const char *m) { perror(m); exit(1); }

static int listener_fd;

static void *echo(void *arg) {
    (void)arg;
    int c = accept(listener_fd, NULL, NULL);
    if (c < 0) die("accept");
    char b;
    while (read(c, &b, 1) == 1) {
        if (write(c, &b, 1) != 1) break;
    }
    close(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "fsync")) {
        int n = atoi(argv[3]);
        if (n <= 0 || n > 1000000) die("N");
        char path[4096];
        snprintf(path, sizeof path, "%s/probe-fsync.tmp", argv[2]);
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd < 0) die("open");
        char buf[1024];
        memset(buf, 'x', sizeof buf);
        double *v = malloc(sizeof(double) * n);
        for (int i = 0; i < n; i++) {
            double t = now_us();
            if (write(fd, buf, sizeof buf) != sizeof buf) die("write");
            if (fdatasync(fd)) die("fdatasync");
            v[i] = now_us() - t;
        }
        close(fd);
        unlink(path);
        report("fdatasync_1k", v, n);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "rtt")) {
        int n = atoi(argv[2]);
        if (n <= 0 || n > 10000000) die("N");
        listener_fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(listener_fd, (struct sockaddr *)&a, sizeof a) || listen(listener_fd, 1) ||
            getsockname(listener_fd, (struct sockaddr *)&a, &len))
            die("listen");
        pthread_t th;
        pthread_create(&th, NULL, echo, NULL);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c, (struct sockaddr *)&a, sizeof a)) die("connect");
        double *v = malloc(sizeof(double) * n);
        char b = 'p';
        for (int i = 0; i < n; i++) {
            double t = now_us();
            if (write(c, &b, 1) != 1 || read(c, &b, 1) != 1) die("ping");
            v[i] = now_us() - t;
        }
        close(c);
        pthread_join(th, NULL);
        report("loopback_rtt", v, n);
        return 0;
    }
    fprintf(stderr, "usage: probe fsync DIR N | probe rtt N\n");
    return 2;
}
