#ifndef FEDSEG_CSODIUM_SHIM_H
#define FEDSEG_CSODIUM_SHIM_H
#include <sodium.h>
#endif
