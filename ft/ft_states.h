/*
 * ft_states.h - the one table of the roles' states: the enum (ft_internal.h),
 * the names `info migrate` and the monitor's STATE events report
 * (role_state.c), and the names ftvmctl checks and prints (`ftvmctl
 * --states`, `--shell`, `--events --until`), which the cluster agent
 * (ra/) compares against. A state is added here and nowhere else; the
 * transitions are role_state.c's.
 *
 * X(ENUM, "name", "role", "what it means")
 */
#ifndef FTVM_FT_STATES_H
#define FTVM_FT_STATES_H

#define FT_STATES(X)                                                                              \
	X(FT_NONE, "none", "none", "no protection configured")                                    \
	X(FT_SETUP, "setup", "primary", "connecting to the secondary, HELLO")                     \
	X(FT_SYNCING, "syncing", "primary", "initial sync of memory and disk")                    \
	X(FT_PROTECTED, "protected", "primary", "every output waits for its checkpoint's ACK")    \
	X(FT_UNPROTECTED, "unprotected", "primary", "running alone: peer lost or cancelled")      \
	X(FT_WAITING, "waiting", "secondary", "listening for a primary")                          \
	X(FT_RECEIVING, "receiving", "secondary", "syncing or in FT mode")                        \
	X(FT_PEER_LOST, "peer-lost", "secondary", "primary gone; holds its last checkpoint")      \
	X(FT_REFUSED, "refused", "secondary", "refused the primary's stream; kept its state")     \
	X(FT_FAILED_OVER, "failed-over", "primary", "was the secondary, now runs the guest")      \
	X(FT_FAILED, "failed", "secondary", "could not fail over")                                \
	X(FT_HANDED_OVER, "handed-over", "primary", "final: the secondary runs the guest now")    \
	X(FT_REVOKING, "revoking-peer", "primary",                                                \
	  "peer lost; output held until the event hook has revoked it")                           \
	X(FT_STOPPED, "stopped", "primary", "final: the guest never runs here again")             \
	X(FT_HANDING_OVER, "handing-over", "primary", "HANDOVER is on its way; never runs again")

#endif
