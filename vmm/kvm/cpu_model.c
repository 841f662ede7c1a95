/*
 * cpu_model.c - the CPU model a guest sees: its vendor and the CPUID
 * words a running guest's code may depend on. A checkpoint (HELLO) or a
 * snapshot moves only between hosts whose models are equal; cpuid.c reads
 * the model from the table each vCPU gets.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmm/vm_internal.h"

/*
 * The words compared between hosts. Bits that follow the guest's own
 * control registers (OSXSAVE, OSPKE) or per-vCPU fields (APIC IDs) are
 * masked out; the stepping is too (a fleet mixes steppings; no code
 * depends on it), family and model are not.
 */
const struct cpu_model_word cpu_model_words[VM_CPU_WORDS] = {
	{ 0x1, 0, 0, 0x0fff3ff0u, "family/model" },
	{ 0x1, 0, 2, ~(1u << 27), "features" },
	{ 0x1, 0, 3, ~0u, "features" },
	{ 0x7, 0, 1, ~0u, "extended features" },
	{ 0x7, 0, 2, ~(1u << 4), "extended features" },
	{ 0x7, 0, 3, ~0u, "extended features" },
	{ 0x7, 1, 0, ~0u, "extended features" },
	{ 0xd, 0, 0, ~0u, "XSAVE components" },
	{ 0xd, 0, 2, ~0u, "XSAVE area size" },
	{ 0xd, 1, 0, ~0u, "XSAVE features" },
	{ 0x80000001, 0, 2, ~0u, "extended-range features" },
	{ 0x80000001, 0, 3, ~0u, "extended-range features" },
	{ 0x80000008, 0, 0, ~0u, "address sizes" },
	{ 0x40000001, 0, 0, ~0u, "KVM paravirtual features" },
};

static const char *const reg_names[] = { "EAX", "EBX", "ECX", "EDX" };

int vm_cpu_model__parse_word(const char *s, unsigned *word)
{
	unsigned long leaf, sub;
	char reg[4], end;

	if (sscanf(s, "%lx.%lu.%3[a-zA-Z]%c", &leaf, &sub, reg, &end) != 3)
		return -EINVAL;
	for (unsigned i = 0; i < VM_CPU_WORDS; i++)
		if (cpu_model_words[i].leaf == leaf && cpu_model_words[i].sub == sub &&
		    strcasecmp(reg_names[cpu_model_words[i].reg], reg) == 0) {
			*word = i;
			return 0;
		}
	return -ENOENT;
}

void vm_cpu_model__word_name(unsigned i, char *buf, size_t len)
{
	if (i >= VM_CPU_WORDS) {
		snprintf(buf, len, "word %u", i);
		return;
	}
	snprintf(buf, len, "leaf 0x%" PRIx32 ".%" PRIu32 " %s (%s)", cpu_model_words[i].leaf,
		 cpu_model_words[i].sub, reg_names[cpu_model_words[i].reg], cpu_model_words[i].what);
}

int vm_cpu_model__check(const struct vm_cpu_model *mine, const char *mine_name,
			const struct vm_cpu_model *peer, const char *peer_name, char *err,
			size_t errlen)
{
	char pv[sizeof(peer->vendor) + 1], mv[sizeof(mine->vendor) + 1];

	snprintf(pv, sizeof(pv), "%.*s", (int)sizeof(peer->vendor), peer->vendor);
	snprintf(mv, sizeof(mv), "%.*s", (int)sizeof(mine->vendor), mine->vendor);
	if (!pv[0]) {
		snprintf(err, errlen, "%s names no CPU (written by an older ftvm); %s is %s", peer_name,
			 mine_name, mv);
		return -EPROTO;
	}
	if (strcmp(pv, mv) != 0) {
		snprintf(err, errlen, "CPU vendor differs: %s %s, %s %s", peer_name, pv, mine_name, mv);
		return -EPROTO;
	}
	for (unsigned i = 0; i < VM_CPU_WORDS; i++) {
		if (peer->word[i] == mine->word[i])
			continue;
		char name[80];
		vm_cpu_model__word_name(i, name, sizeof(name));
		snprintf(err, errlen,
			 "guest-visible CPUID differs (%s): %s: %s 0x%08" PRIx32 ", %s 0x%08" PRIx32,
			 pv, name, peer_name, peer->word[i], mine_name, mine->word[i]);
		return -EPROTO;
	}
	return 0;
}

