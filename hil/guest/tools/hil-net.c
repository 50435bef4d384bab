/*
 * hil-net: the reference guest's side of hil's network checks (busybox's nc has no UDP).
 *
 *   hil-net echo tcp|udp PORT              serve: echo every byte / datagram back, forever
 *   hil-net send tcp|udp HOST PORT PAYLOAD  send PAYLOAD once; print any reply; exit 0 if sent
 *
 * Every blocking call in "send" is bounded by alarm() so a broken network fails instead of hanging.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEND_TIMEOUT_SECONDS 10

static int fail(const char *what) {
    fprintf(stderr, "hil-net: %s: %s\n", what, strerror(errno));
    return 1;
}

static int open_socket(const char *proto) {
    return socket(AF_INET, strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM, 0);
}

static int bind_any(int fd, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

static void echo_stream(int conn) {
    char buf[65536];
    ssize_t got;
    while ((got = read(conn, buf, sizeof buf)) > 0) {
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(conn, buf + done, got - done);
            if (put <= 0) return;
            done += put;
        }
    }
}

static int serve_tcp(int fd) {
    if (listen(fd, 16) < 0) return fail("listen");
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) continue;
        if (fork() == 0) {
            echo_stream(conn);
            _exit(0);
        }
        close(conn);
    }
    return 0; /* not reached */
}

static int serve_udp(int fd) {
    char buf[65536];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (got >= 0) sendto(fd, buf, got, 0, (struct sockaddr *)&peer, len);
    }
    return 0; /* not reached */
}

static int echo(const char *proto, int port) {
    int fd = open_socket(proto);
    if (fd < 0) return fail("socket");
    if (bind_any(fd, port) < 0) return fail("bind");
    return strcmp(proto, "udp") == 0 ? serve_udp(fd) : serve_tcp(fd);
}

static int send_once(const char *proto, const char *host, int port, const char *payload) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "hil-net: bad address %s\n", host);
        return 2;
    }
    alarm(SEND_TIMEOUT_SECONDS);
    int fd = open_socket(proto);
    if (fd < 0) return fail("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("connect");
    size_t length = strlen(payload);
    if (write(fd, payload, length) != (ssize_t)length) return fail("write");
    if (strcmp(proto, "tcp") == 0) shutdown(fd, SHUT_WR);
    printf("sent %zu bytes\n", length);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "echo") == 0) return echo(argv[2], atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "send") == 0) return send_once(argv[2], argv[3], atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: hil-net echo tcp|udp PORT | hil-net send tcp|udp HOST PORT PAYLOAD\n");
    return 2;
}
