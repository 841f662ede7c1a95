/* <string.h> for lwIP's sources in the freestanding guest: the guest's own. */
#include "lib/string.h"
