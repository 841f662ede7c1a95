/* <stdlib.h> for lwIP's sources in the freestanding guest: netif.c's atoi
 * (netif_find by name), in net/lwip_libc.c. */
int atoi(const char *s);
