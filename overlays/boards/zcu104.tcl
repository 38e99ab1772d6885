# Board configuration: Xilinx ZCU104 (Zynq UltraScale+ XCZU7EV-2FFVC1156E).
# Sourced by ../build_overlay.tcl. Every variable is documented in ../README.md ("Board files").

set BOARD_NAME      ZCU104                 ;# PYNQ's board name = pynq_bnn/overlays/<BOARD_NAME>/
set PART            xczu7ev-ffvc1156-2-e
set BOARD_PART_GLOB "*:zcu104:part0:*"   ;# xilinx.com:zcu104:part0:1.1, ships with Vivado
set PS_KIND         zynq_ultra_ps_e        ;# Zynq UltraScale+ MPSoC
set FCLK_MHZ        100                    ;# pl_clk0 = the kernel clock
set CTRL_BASE       0xA0000000             ;# kernel s_axilite on M_AXI_HPM0_FPD, 64 KiB
set INTC_BASE       0xA0010000             ;# axi_intc, 64 KiB
set IO_PLL_MHZ      {}                     ;# not checked (the board preset sets the clock plan)
# Without the board files the zynq_ultra_ps_e defaults are kept (33.333 MHz PS reference, IOPLL
# source for pl_clk0), which match the ZCU104.
set PS_FALLBACK_CONFIG {}
