/* A pointer chase over 8 MiB of 64-byte nodes linked in one random cycle (Sattolo's
 * shuffle), as graph and linked-structure code walks memory: every step's address
 * depends on the previous load, and consecutive nodes share no page. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NODES (128 * 1024)
#define STEPS (256 * 1024)

struct node { struct node *next; uint64_t pad[7]; };

int main(void)
{
	struct node *nodes = malloc(sizeof(struct node) * NODES);
	uint32_t *order = malloc(sizeof(uint32_t) * NODES);
	uint64_t x = 88172645463325252ull, sum = 0;

	for (uint32_t i = 0; i < NODES; i++)
		order[i] = i;
	for (uint32_t i = NODES - 1; i > 0; i--) {   /* Sattolo: one cycle through all */
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		uint32_t j = x % i, t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < NODES; i++)
		nodes[order[i]].next = &nodes[order[(i + 1) % NODES]];
	struct node *p = &nodes[order[0]];
	for (uint32_t s = 0; s < STEPS; s++) {
		sum += p->pad[0];
		p = p->next;
	}
	printf("%llu %p\n", (unsigned long long)sum, (void *)p);
	return 0;
}
