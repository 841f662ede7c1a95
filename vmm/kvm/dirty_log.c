/*
 * dirty_log.c - which guest pages were written since the last look.
 *
 * Three ways to ask KVM, chosen when the VM is created (vm_config.dirty_mode):
 *
 *   ring    KVM_CAP_DIRTY_LOG_RING: each vCPU appends the pages it dirties
 *           to a ring shared with us; we harvest the entries and hand them
 *           back with KVM_RESET_DIRTY_RINGS, which write-protects those pages
 *           again. The cost follows the dirty pages, not the RAM size. A
 *           full ring stops its vCPU (KVM_EXIT_DIRTY_RING_FULL) until its
 *           thread moves the entries to `spill` (dirty_log__ring_full).
 *   clear   KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG copies the
 *           slot's bitmap without touching the pages; KVM_CLEAR_DIRTY_LOG
 *           re-protects only the runs of words that had bits. Hot pages
 *           (written in two rounds running, up to hot_max of them) are not
 *           re-protected: the guest's next writes to them take no fault
 *           (on shadow paging ~12 us each), and since KVM then never clears
 *           their bit, every round reports them dirty and copies them.
 *           Each round re-protects one page in 64 of them (those whose
 *           number mod 64 is the round's), so each hot page is re-protected
 *           once every 64 rounds and must then be written twice running
 *           again to stay hot; the faults that costs are spread over the
 *           rounds, not all in one.
 *   bitmap  KVM_GET_DIRTY_LOG alone: the kernel walks and re-protects the
 *           whole slot on every call.
 *
 * Whatever the mode, a page is taken (collected and re-protected) before
 * its contents are read, so a write after the read is in the next round.
 *
 * Pages the VMM writes itself (device DMA) are never in KVM's log: they go
 * to `vmm_dirty`, a two-level atomic set, so draining it also costs only
 * what was set.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/vm_internal.h"

#define RING_MAX_BYTES (1u << 20)	/* 65,536 entries per vCPU */
#define HOT_COOL_ROUNDS 64	/* = the bits of a bitmap word: round r cools bit r % 64 */
#define AUTO_CLEAR_MAX_BYTES (4ull << 30)

/* ---- the two-level page set ------------------------------------------- */

int page_set__init(struct page_set *s, uint64_t nr_pages)
{
	s->nr_words = (nr_pages + 63) / 64;
	s->words = calloc(s->nr_words, sizeof(*s->words));
	s->sum = calloc((s->nr_words + 63) / 64, sizeof(*s->sum));
	if (!s->words || !s->sum) {
		page_set__free(s);
		return -ENOMEM;
	}
	return 0;
}

void page_set__free(struct page_set *s)
{
	free((void *)s->words);
	free((void *)s->sum);
	memset(s, 0, sizeof(*s));
}

void page_set__add(struct page_set *s, uint64_t page)
{
	uint64_t w = page / 64;
	atomic_fetch_or_explicit(&s->words[w], 1ull << (page % 64), memory_order_relaxed);
	atomic_fetch_or_explicit(&s->sum[w / 64], 1ull << (w % 64), memory_order_release);
}

/* Adds page to the caller's set; appends it to the list if it is new. */
static int take(struct vm_dirty_pages *d, uint64_t page)
{
	uint64_t bit = 1ull << (page % 64);
	if (d->seen[page / 64] & bit)
		return 0;
	d->seen[page / 64] |= bit;
	return d->list ? vm_page_list__add(d->list, page) : 0;
}

int vm_page_list__add(struct vm_page_list *l, uint64_t page)
{
	if (l->nr == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 1024;
		uint64_t *p = realloc(l->pages, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->pages = p;
		l->cap = cap;
	}
	l->pages[l->nr++] = page;
	return 0;
}

static int page_set__drain(struct page_set *s, struct vm_dirty_pages *d)
{
	uint64_t nsum = (s->nr_words + 63) / 64;
	int ret = 0;

	for (uint64_t i = 0; i < nsum; i++) {
		uint64_t sum = atomic_exchange_explicit(&s->sum[i], 0, memory_order_acquire);
		while (sum) {
			uint64_t w = i * 64 + (uint64_t)__builtin_ctzll(sum);
			sum &= sum - 1;
			uint64_t bits = atomic_exchange_explicit(&s->words[w], 0, memory_order_relaxed);
			while (bits) {
				int r = take(d, w * 64 + (uint64_t)__builtin_ctzll(bits));
				bits &= bits - 1;
				if (r)
					ret = r;	/* keep draining: the set is emptied either way */
			}
		}
	}
	return ret;
}

void page_set__clear(struct page_set *s)
{
	for (uint64_t w = 0; w < s->nr_words; w++)
		atomic_store(&s->words[w], 0);
	for (uint64_t i = 0; i < (s->nr_words + 63) / 64; i++)
		atomic_store(&s->sum[i], 0);
}

/* ---- mode selection ----------------------------------------------------- */

static int enable_ring(struct guest_mem *m, int vm_fd, uint32_t want_bytes)
{
	int cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	int max = ioctl(vm_fd, KVM_CHECK_EXTENSION, cap);
	if (max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm_fd, KVM_CHECK_EXTENSION, cap);
	}
	if (max <= 0)
		return -ENOTSUP;
	uint32_t bytes = (uint32_t)max < RING_MAX_BYTES ? (uint32_t)max : RING_MAX_BYTES;
	if (want_bytes && want_bytes < bytes)
		bytes = want_bytes;
	struct kvm_enable_cap ec = { .cap = (uint32_t)cap, .args = { bytes } };
	if (ioctl(vm_fd, KVM_ENABLE_CAP, &ec) < 0)
		return -errno;
	m->ring_bytes = bytes;
	return 0;
}

static int enable_clear(int vm_fd)
{
	int have = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (have <= 0 || !(have & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return -ENOTSUP;
	struct kvm_enable_cap ec = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				     .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } };
	if (ioctl(vm_fd, KVM_ENABLE_CAP, &ec) < 0)
		return -errno;
	return 0;
}

int dirty_log__setup(struct guest_mem *m, int vm_fd, enum vm_dirty_mode want, uint32_t ring_bytes,
		     char *err)
{
	int ret = -ENOTSUP;

	/* auto: up to AUTO_CLEAR_MAX_BYTES of RAM, clear first (its hot pages
	 * spare the guest a fault per page it writes every round, and copying
	 * the bitmap stays cheap); above, the ring (its cost follows the dirty
	 * pages, not the RAM: docs/scaling.md). */
	if (want == VM_DIRTY_AUTO && m->nr_pages * VMM_PAGE_SIZE <= AUTO_CLEAR_MAX_BYTES) {
		ret = enable_clear(vm_fd);
		if (!ret)
			m->dirty_mode = VM_DIRTY_CLEAR;
	}
	if (ret && (want == VM_DIRTY_AUTO || want == VM_DIRTY_RING)) {
		ret = enable_ring(m, vm_fd, ring_bytes);
		if (!ret)
			m->dirty_mode = VM_DIRTY_RING;
	}
	if (ret && (want == VM_DIRTY_AUTO || want == VM_DIRTY_CLEAR)) {
		ret = enable_clear(vm_fd);
		if (!ret)
			m->dirty_mode = VM_DIRTY_CLEAR;
	}
	if (ret && (want == VM_DIRTY_AUTO || want == VM_DIRTY_BITMAP)) {
		m->dirty_mode = VM_DIRTY_BITMAP;
		ret = 0;
	}
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "dirty log mode %s: this KVM does not offer it (%s)",
			 vm__dirty_mode_name(want), strerror(-ret));
		return ret;
	}
	if (m->dirty_mode != VM_DIRTY_RING) {
		for (unsigned i = 0; i < m->nr_slots; i++) {
			size_t words = (m->slots[i].size / VMM_PAGE_SIZE + 63) / 64;
			m->slot_log[i] = calloc(words, 8);
			bool hot = m->dirty_mode == VM_DIRTY_CLEAR;
			if (hot) {
				m->slot_hot[i] = calloc(words, 8);
				m->slot_prev[i] = calloc(words, 8);
				m->slot_clear[i] = calloc(words, 8);
			}
			if (!m->slot_log[i] ||
			    (hot && (!m->slot_hot[i] || !m->slot_prev[i] || !m->slot_clear[i]))) {
				snprintf(err, VMM_ERR_LEN, "out of memory for the dirty bitmap");
				return -ENOMEM;
			}
		}
	}
	ret = page_set__init(&m->spill, m->nr_pages);
	if (ret)
		snprintf(err, VMM_ERR_LEN, "out of memory for the dirty page set");
	return ret;
}

int dirty_log__map_ring(struct guest_mem *m, unsigned idx, int vcpu_fd, char *err)
{
	struct dirty_ring *r = &m->rings[idx];

	pthread_mutex_init(&r->lock, NULL);
	r->fd = vcpu_fd;
	if (m->dirty_mode != VM_DIRTY_RING)
		return 0;
	long psz = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, m->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		       (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * psz);
	if (p == MAP_FAILED) {
		int ret = -errno;
		snprintf(err, VMM_ERR_LEN, "mmap of vCPU %u's dirty ring: %s", idx, strerror(errno));
		return ret;
	}
	r->gfns = p;
	r->nr = m->ring_bytes / sizeof(struct kvm_dirty_gfn);
	if (idx >= m->nr_rings)
		m->nr_rings = idx + 1;
	return 0;
}

void dirty_log__free(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nr_rings; i++)
		if (m->rings[i].gfns)
			munmap(m->rings[i].gfns, m->ring_bytes);
	for (unsigned i = 0; i < KVM_MAX_SLOTS; i++) {
		free(m->slot_log[i]);
		free(m->slot_hot[i]);
		free(m->slot_prev[i]);
		free(m->slot_clear[i]);
	}
	page_set__free(&m->spill);
}

/* ---- harvesting ----------------------------------------------------------- */

/*
 * Takes ring r's dirty entries (its lock held). An entry names a slot and
 * a page offset inside it; one KVM would never write is skipped.
 */
static int ring__harvest(struct guest_mem *m, struct dirty_ring *r, struct vm_dirty_pages *d,
			 struct page_set *to, unsigned *taken)
{
	int ret = 0;

	for (;;) {
		struct kvm_dirty_gfn *g = &r->gfns[r->fetch & (r->nr - 1)];
		uint32_t flags = __atomic_load_n(&g->flags, __ATOMIC_ACQUIRE);
		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		uint32_t slot = g->slot & 0xffff;
		if (slot < m->nr_slots && g->offset < m->slots[slot].size / VMM_PAGE_SIZE) {
			uint64_t page = m->slots[slot].first_page + g->offset;
			if (to)
				page_set__add(to, page);
			else if (take(d, page))
				ret = -ENOMEM;
		}
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		r->fetch++;
		(*taken)++;
	}
	return ret;
}

/* The vCPU thread of a full ring: its entries go to `spill`. */
int dirty_log__ring_full(struct guest_mem *m, int vm_fd, unsigned idx)
{
	struct dirty_ring *r = &m->rings[idx];
	unsigned taken = 0;

	if (!r->gfns)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	ring__harvest(m, r, NULL, &m->spill, &taken);
	int ret = taken && ioctl(vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0 ? -errno : 0;
	pthread_mutex_unlock(&r->lock);
	m->ring_full_exits++;
	return ret;
}

static int collect_ring(struct guest_mem *m, int vm_fd, struct vm_dirty_pages *d)
{
	unsigned taken = 0;
	int ret = 0;

	for (unsigned i = 0; i < m->nr_rings; i++) {
		struct dirty_ring *r = &m->rings[i];
		pthread_mutex_lock(&r->lock);
		int h = ring__harvest(m, r, d, NULL, &taken);
		pthread_mutex_unlock(&r->lock);
		if (h)
			ret = h;
	}
	if (taken && ioctl(vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0 && !ret)
		ret = -errno;
	int s = page_set__drain(&m->spill, d);
	return ret ? ret : s;
}

/* KVM_CLEAR_DIRTY_LOG over each run of non-zero words of a slot's log. */
static int clear_runs(int vm_fd, unsigned slot, uint64_t *log, uint64_t words, uint64_t pages)
{
	for (uint64_t w = 0; w < words;) {
		if (!log[w]) {
			w++;
			continue;
		}
		uint64_t end = w;
		while (end < words && log[end])
			end++;
		uint64_t first = w * 64, n = (end - w) * 64;
		if (first + n > pages)
			n = pages - first;	/* the slot's last, partial word */
		struct kvm_clear_dirty_log c = { .slot = slot, .num_pages = (uint32_t)n,
						 .first_page = first, .dirty_bitmap = &log[w] };
		if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
		w = end;
	}
	return 0;
}

/*
 * clear mode's hot pages (see the top of the file), over every slot's log:
 * first the hot pages that stay (KVM kept their bits), while they fit in
 * max; then pages dirty this round and the last join them while room
 * lasts; then each slot's other dirty pages are re-protected. cool_bit:
 * the bit of each word this round re-protects whatever it holds; cool:
 * every page is re-protected (hot pages are off). The two passes span all slots so that one
 * slot's new candidates never push out another's hot pages.
 */
static int clear_all_but_hot(struct guest_mem *m, int vm_fd, bool cool, unsigned cool_bit,
			     uint32_t max, uint32_t *hot_now)
{
	uint64_t stay = ~(1ull << cool_bit);

	for (unsigned i = 0; i < m->nr_slots; i++) {
		uint64_t *log = m->slot_log[i], *hot = m->slot_hot[i];
		uint64_t words = (m->slots[i].size / VMM_PAGE_SIZE + 63) / 64;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t keep = cool ? 0 : log[w] & hot[w] & stay;
			while (keep && *hot_now + (uint32_t)__builtin_popcountll(keep) > max)
				keep &= keep - 1;	/* max was lowered: the excess cools */
			*hot_now += (uint32_t)__builtin_popcountll(keep);
			hot[w] = keep;
		}
	}
	for (unsigned i = 0; i < m->nr_slots; i++) {
		uint64_t *log = m->slot_log[i], *hot = m->slot_hot[i], *prev = m->slot_prev[i];
		uint64_t *clr = m->slot_clear[i];
		uint64_t pages = m->slots[i].size / VMM_PAGE_SIZE, words = (pages + 63) / 64;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t heat = cool ? 0 : log[w] & prev[w] & ~hot[w] & stay;
			while (heat && *hot_now < max) {
				hot[w] |= heat & -heat;
				heat &= heat - 1;
				(*hot_now)++;
			}
			prev[w] = log[w];
			clr[w] = log[w] & ~hot[w];
		}
		int ret = clear_runs(vm_fd, i, clr, words, pages);
		if (ret)
			return ret;
	}
	return 0;
}

/* Dirty logging was switched on or off: KVM starts a clean log, so no page is hot. */
void dirty_log__reset_hot(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nr_slots; i++) {
		if (!m->slot_hot[i])
			continue;
		size_t words = (m->slots[i].size / VMM_PAGE_SIZE + 63) / 64;
		memset(m->slot_hot[i], 0, words * 8);
		memset(m->slot_prev[i], 0, words * 8);
	}
	m->hot_rounds = 0;
	atomic_store(&m->hot_now, 0);
}

static int collect_bitmap(struct guest_mem *m, int vm_fd, struct vm_dirty_pages *d)
{
	int ret = 0;

	for (unsigned i = 0; i < m->nr_slots; i++) {
		struct kvm_dirty_log gl = { .slot = i, .dirty_bitmap = m->slot_log[i] };
		if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &gl) < 0)
			return -errno;
	}
	if (m->dirty_mode == VM_DIRTY_CLEAR) {
		uint32_t max = atomic_load(&m->hot_max), hot_now = 0;
		unsigned cool_bit = ++m->hot_rounds % HOT_COOL_ROUNDS;
		ret = clear_all_but_hot(m, vm_fd, !max, cool_bit, max, &hot_now);
		atomic_store(&m->hot_now, ret ? 0 : hot_now);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < m->nr_slots; i++) {
		const struct mem_slot *s = &m->slots[i];
		const uint64_t *log = m->slot_log[i];
		uint64_t words = (s->size / VMM_PAGE_SIZE + 63) / 64;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t bits = log[w];
			while (bits) {
				/* Keep taking: every page must reach seen, whatever the list. */
				if (take(d, s->first_page + w * 64 + (uint64_t)__builtin_ctzll(bits)))
					ret = -ENOMEM;
				bits &= bits - 1;
			}
		}
	}
	return ret;
}

int dirty_log__collect(struct guest_mem *m, int vm_fd, struct vm_dirty_pages *d)
{
	if (!m->dirty_log)
		return -EINVAL;
	int ret = m->dirty_mode == VM_DIRTY_RING ? collect_ring(m, vm_fd, d)
						 : collect_bitmap(m, vm_fd, d);
	int v = page_set__drain(&m->vmm_dirty, d);
	return ret ? ret : v;
}
