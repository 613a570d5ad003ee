/* A PostgreSQL startup over a unix socket (user and database "postgres"): prints
   PG-AUTH-OK when the server accepts without a password (trust), else PG-NO. Built static
   by the hostile suite and shipped inside the tenant's base image. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("PG-NO connect");
        return 1;
    }
    char buf[256];
    int n = 8;
    const char *kv[] = {"user", "postgres", "database", "postgres"};
    for (int i = 0; i < 4; i++) {
        strcpy(buf + n, kv[i]);
        n += (int)strlen(kv[i]) + 1;
    }
    buf[n++] = 0;
    uint32_t len = htonl((uint32_t)n), proto = htonl(196608);
    memcpy(buf, &len, 4);
    memcpy(buf + 4, &proto, 4);
    if (write(s, buf, n) != n) return 1;
    unsigned char r[9];
    int got = 0;
    while (got < 9) {
        int k = (int)read(s, r + got, 9 - got);
        if (k <= 0) break;
        got += k;
    }
    if (got == 9 && r[0] == 'R' && !r[5] && !r[6] && !r[7] && !r[8])
        printf("PG-AUTH-OK\n");
    else
        printf("PG-NO %d\n", got);
    unsigned char bye[5] = {'X', 0, 0, 0, 4};
    (void)write(s, bye, 5);
    close(s);
    return 0;
}
