/* A tiny x86-64 shared object exporting some of tt-metal 0.81.1's real mangled names (as the
 * stand-in library does), as empty functions: small enough to fuzz from and to embed in the
 * catalog fuzz target. C1/D1 are aliases of C2/D2, as g++ emits them. Built by elf.sh. */

void f0(void) __asm__("_ZN2tt4llrt23write_binary_to_addressERNS_8tt_metal12MetalEnvImplERKN6ll_api6memoryEiRKNS_7xy_pairEj");
void f0(void) {}

void f1(void) __asm__("_ZN2tt8tt_metal11BankManager14deallocate_allEv");
void f1(void) {}

void f2(void) __asm__("_ZN2tt8tt_metal11BankManager15allocate_bufferEmmbRKNS0_12CoreRangeSetESt8optionalIjEN4ttsl10StrongTypeIjNS0_14AllocatorIDTagEEERKSt6vectorISt4pairImmESaISD_EERKS5_ISt13unordered_setIjSt4hashIjESt8equal_toIjESaIjEEE");
void f2(void) {}

void f3(void) __asm__("_ZN2tt8tt_metal11BankManager17deallocate_bufferEmN4ttsl10StrongTypeIjNS0_14AllocatorIDTagEEE");
void f3(void) {}

void f4(void) __asm__("_ZN2tt8tt_metal11BankManagerC2ERKNS0_10BufferTypeERKSt6vectorIlSaIlEEmjjmbRKNS1_21AllocatorDependenciesE");
void f4(void) {}

void f5(void) __asm__("_ZN2tt8tt_metal11distributed10MeshDevice5closeEv");
void f5(void) {}

void f6(void) __asm__("_ZN2tt8tt_metal11distributed10MeshDevice6createERKNS1_16MeshDeviceConfigEmmmRKNS0_18DispatchCoreConfigESt4spanIKjLm18446744073709551615EEm");
void f6(void) {}

void f7(void) __asm__("_ZN2tt8tt_metal11distributed10MeshDeviceD2Ev");
void f7(void) {}

void f8(void) __asm__("_ZN2tt8tt_metal12GraphTracker17track_allocate_cbERKNS0_12CoreRangeSetEmmbPKNS0_7IDeviceE");
void f8(void) {}

void f9(void) __asm__("_ZN2tt8tt_metal12GraphTracker19track_deallocate_cbEPKNS0_7IDeviceE");
void f9(void) {}

void f10(void) __asm__("_ZN2tt8tt_metal13DeviceManager13close_devicesERKSt6vectorIPNS0_7IDeviceESaIS4_EEb");
void f10(void) {}

void f11(void) __asm__("_ZN2tt8tt_metal13DeviceManager33initialize_fabric_and_dispatch_fwEv");
void f11(void) {}

void f12(void) __asm__("_ZN2tt8tt_metal6Device12bank_managerENS0_10BufferTypeE");
void f12(void) {}

void f13(void) __asm__("_ZN2tt8tt_metal6Device15next_cb_addressEm");
void f13(void) {}

void f14(void) __asm__("_ZN2tt8tt_metal6Device16configure_fabricEv");
void f14(void) {}

void f15(void) __asm__("_ZN2tt8tt_metal6Device18reset_cb_addressesEv");
void f15(void) {}

void f16(void) __asm__("_ZN2tt8tt_metal6Device32configure_command_queue_programsEPNS0_16DispatchTopologyE");
void f16(void) {}

void f17(void) __asm__("_ZN2tt8tt_metal6Device5closeEv");
void f17(void) {}

void f18(void) __asm__("_ZN2tt8tt_metal6DeviceC2EPNS0_8MetalEnvEPNS0_12MetalContextEihmmSt4spanIKjLm18446744073709551615EEbjjm");
void f18(void) {}

void f19(void) __asm__("_ZN2tt8tt_metal6detail11ProgramImpl33allocate_kernel_bin_buf_on_deviceEPNS0_7IDeviceE");
void f19(void) {}

void a20(void) __asm__("_ZN2tt8tt_metal11BankManagerC1ERKNS0_10BufferTypeERKSt6vectorIlSaIlEEmjjmbRKNS1_21AllocatorDependenciesE") __attribute__((alias("_ZN2tt8tt_metal11BankManagerC2ERKNS0_10BufferTypeERKSt6vectorIlSaIlEEmjjmbRKNS1_21AllocatorDependenciesE")));

void a21(void) __asm__("_ZN2tt8tt_metal11distributed10MeshDeviceD1Ev") __attribute__((alias("_ZN2tt8tt_metal11distributed10MeshDeviceD2Ev")));

void a22(void) __asm__("_ZN2tt8tt_metal6DeviceC1EPNS0_8MetalEnvEPNS0_12MetalContextEihmmSt4spanIKjLm18446744073709551615EEbjjm") __attribute__((alias("_ZN2tt8tt_metal6DeviceC2EPNS0_8MetalEnvEPNS0_12MetalContextEihmmSt4spanIKjLm18446744073709551615EEbjjm")));
