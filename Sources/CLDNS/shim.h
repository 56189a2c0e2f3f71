#ifndef STANDBY_CLDNS_SHIM_H
#define STANDBY_CLDNS_SHIM_H
// ldns's headers use bool without including stdbool.h.
#include <stdbool.h>
#include <ldns/ldns.h>
#endif
