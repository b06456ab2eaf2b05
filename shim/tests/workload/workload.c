/*
 * A process tree with known contents for the forensic tests: the parent holds an open
 * file, a listening TCP socket, both ends of an established loopback connection, a
 * listening unix socket and a known string in heap memory; its child sleeps under a
 * known name. Usage: workload DIR PORT MARKER. Writes DIR/ready with the parent's pid
 * when everything is in place, then waits for signals. WL_FILL_MB=N adds N MiB of dirty
 * heap with a second copy of the marker in its middle.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: workload DIR PORT MARKER\n"); return 2; }
    const char *dir = argv[1];
    int port = atoi(argv[2]);
    char path[4096];

    /* Only what this program opens should be in the dump. */
    for (int fd = 3; fd < 1024; fd++) close(fd);

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        prctl(PR_SET_NAME, "wl-child", 0, 0, 0);
        for (;;) pause();
    }

    snprintf(path, sizeof path, "%s/evidence.txt", dir);
    int file = open(path, O_RDWR | O_CREAT, 0600);
    if (file < 0) die("open");
    if (write(file, "evidence\n", 9) != 9) die("write");

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lsn = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lsn, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lsn, (struct sockaddr *)&a, sizeof a) || listen(lsn, 4)) die("listen");
    int cli = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cli, (struct sockaddr *)&a, sizeof a)) die("connect");
    int srv = accept(lsn, NULL, NULL);
    if (srv < 0) die("accept");

    struct sockaddr_un u = {.sun_family = AF_UNIX};
    snprintf(u.sun_path, sizeof u.sun_path, "%s/wl.sock", dir);
    int usk = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(usk, (struct sockaddr *)&u, sizeof u) || listen(usk, 4)) die("unix listen");

    /* The known string lives on the heap, well away from argv. */
    size_t n = strlen(argv[3]);
    char *secret = malloc(n + 64);
    snprintf(secret, n + 64, "heap-secret=%s;", argv[3]);

    /* WL_FILL_MB=N: N MiB of dirty anonymous memory, for size and speed tests. */
    const char *fill = getenv("WL_FILL_MB");
    if (fill) {
        size_t bytes = (size_t)atoi(fill) << 20;
        unsigned char *big = malloc(bytes);
        if (!big) die("malloc fill");
        for (size_t i = 0; i < bytes; i++) big[i] = (unsigned char)(i * 131 + 7);
        memcpy(big + bytes / 2, "deep-secret=", 12);
        memcpy(big + bytes / 2 + 12, argv[3], n);
        /* The buffer is never read: keep the compiler from dropping the stores. */
        __asm__ volatile("" : : "r"(big) : "memory");
    }

    snprintf(path, sizeof path, "%s/ready", dir);
    FILE *r = fopen(path, "w");
    if (!r) die("ready");
    fprintf(r, "%d\n", getpid());
    fclose(r);
    for (;;) pause();
    (void)secret;
}
