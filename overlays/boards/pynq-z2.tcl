# Board configuration: TUL PYNQ-Z2 (Zynq-7000 XC7Z020-1CLG400C, 512 MB DDR3 x16, 50 MHz PS_CLK).
# Sourced by ../build_overlay.tcl. Every variable is documented in ../README.md ("Board files").

set BOARD_NAME      Pynq-Z2                ;# PYNQ's board name = pynq_bnn/overlays/<BOARD_NAME>/
set PART            xc7z020clg400-1
set BOARD_PART_GLOB "*:pynq-z2:part0:*"  ;# tul.com.tw:pynq-z2:part0:1.0, if installed
set PS_KIND         ps7                    ;# processing_system7 (Zynq-7000)
set FCLK_MHZ        100                    ;# FCLK_CLK0 = the kernel clock (hls_src target: 10 ns)
set CTRL_BASE       0x40000000             ;# kernel s_axilite on M_AXI_GP0, 64 KiB
set INTC_BASE       0x41800000             ;# axi_intc, 64 KiB (PYNQ's base overlays use this address)
set IO_PLL_MHZ      1000                   ;# must equal the board image's IO PLL (see README)

# Used only when the board files are NOT installed (no board preset): the settings of the PYNQ-Z2
# preset that the PL overlay depends on. The DDR itself is configured by the board image's FSBL,
# not by a PL bitstream, but the PS clock plan must match it: PYNQ 3.x programs FCLK0 with the
# divisors recorded in the .hwh, which are only right if the IO PLL here equals the board's.
set PS_FALLBACK_CONFIG [list \
    CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ {50} \
    CONFIG.PCW_APU_PERIPHERAL_FREQMHZ {650} \
    CONFIG.PCW_UIPARAM_DDR_PARTNO {MT41K256M16 RE-125} \
    CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH {16 Bit} \
    CONFIG.PCW_UIPARAM_DDR_FREQ_MHZ {525} \
    CONFIG.PCW_PRESET_BANK1_VOLTAGE {LVCMOS 1.8V} \
    CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC {IO PLL} \
]
