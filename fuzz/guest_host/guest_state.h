/*
 * fuzz/guest_host/guest_state.h - forced (-include, fuzz/CMakeLists.txt)
 * into every guest source of fuzz_guest_net: lwIP's core, guest/net,
 * guest/workload, guest/lib and kv_host.c; not host_guest.c (the shim's own
 * state: the heap arena, the clock). Their writable variables, static
 * locals included, go to two sections of their own, which
 * host_guest_state_reset() sets back before each boot: .data as the
 * program was loaded, .bss zeroed. So every input boots a guest whose
 * memory is what the ELF gives a fresh VM.
 *
 * lwip_init() is not enough for that: it re-initialises the heap and the
 * pools (mem_init, memp_init) but leaves the lists that point into them
 * (udp_pcbs, the TCP pcb lists, netif_list and netif_default, the timeout
 * list sys_timeouts_init() then appends to), the ARP table (etharp_init is
 * an empty macro), ip_id, tcp_ticks and the ISN, and the glue's own state
 * (net.c's UDP bindings, the netif, the random generator's seed), which
 * would all carry over from the previous input.
 *
 * ASan still instruments these variables (the sections are named, not
 * set by a section attribute); the reset copies around its redzones
 * without touching the shadow.
 */
#ifndef __clang__
#error "fuzz_guest_net is built with clang (#pragma clang section)"
#endif
#pragma clang section bss = "ftvm_guest_bss" data = "ftvm_guest_data"
