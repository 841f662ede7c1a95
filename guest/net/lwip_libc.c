/*
 * The libc functions lwIP's sources want that the guest's lib/ lacks
 * (guest/net/lwip/libc/ declares them). Guest build only.
 */
#include <stdlib.h>

/* For netif_find(): a decimal number, as far as it goes. */
int atoi(const char *s)
{
	int v = 0, neg = *s == '-';
	for (s += neg || *s == '+'; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (*s - '0');
	return neg ? -v : v;
}
