# Board configuration: Avnet Ultra96-V2 (Zynq UltraScale+ XCZU3EG-1SBVA484I).
# Sourced by ../build_overlay.tcl. Every variable is documented in ../README.md ("Board files").

set BOARD_NAME      Ultra96                ;# PYNQ's board name = pynq_bnn/overlays/<BOARD_NAME>/
set PART            xczu3eg-sbva484-1-i
set BOARD_PART_GLOB "*:ultra96v2:part0:*" ;# avnet.com: (or em.avnet.com:, avnet-tria:), XHub store
set PS_KIND         zynq_ultra_ps_e        ;# Zynq UltraScale+ MPSoC
set FCLK_MHZ        100                    ;# pl_clk0 = the kernel clock
set CTRL_BASE       0xA0000000             ;# kernel s_axilite on M_AXI_HPM0_FPD, 64 KiB
set INTC_BASE       0xA0010000             ;# axi_intc, 64 KiB
set IO_PLL_MHZ      {}                     ;# not checked (the board preset sets the clock plan)
# Without the board files the zynq_ultra_ps_e defaults are kept (33.333 MHz PS reference, IOPLL
# source for pl_clk0), which is what the Ultra96-V2 preset uses too (check the .hwh, see README).
set PS_FALLBACK_CONFIG {}
