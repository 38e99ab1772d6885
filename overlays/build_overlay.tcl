# pynq-bnn overlay: Vivado block design -> bitstream -> bnn.bit + bnn.hwh, for one board.
#
#   vivado -mode batch -source build_overlay.tcl -tclargs <board> <ip_repo> <out_dir> [jobs]
#
#   <board>    a file boards/<board>.tcl (pynq-z2, pynq-z1, zcu104, ultra96v2, kv260)
#   <ip_repo>  the folder that holds the exported HLS IP (pynq-bnn:hls:bnn_kernel:*), e.g.
#              build/hls-xc7z020clg400-1/ip (the Makefile passes it)
#   <out_dir>  where bnn.bit, bnn.hwh and bnn.json are written (the Makefile passes
#              ../pynq_bnn/overlays/<BOARD_NAME>)
#   [jobs]     parallel jobs for synthesis/implementation runs (default 4)
#
# The Vivado project goes to ./<board>/ under the current directory (the Makefile runs this from
# overlays/build/). Run `make -C overlays help` rather than calling this directly.
#
# Written for Vivado 2022.1 .. 2023.2 (project layout <proj>.gen/, assign_bd_address -offset);
# the IP versions are looked up in the catalog, not pinned. NOT RUN: the machines this was
# written on have no Vivado (see README.md, "What was run").
#
# Block design (the same for every board; the processing system and its port names differ):
#
#   PS master (M_AXI_GP0 | M_AXI_HPM0_FPD) -> ctrl_interconnect -> bnn_kernel_0/s_axi_control
#                                                                -> axi_intc_0/s_axi
#   bnn_kernel_0/m_axi_<bundle> -> mem_interconnect_hp<n> -> PS slave n (S_AXI_HP<n> | S_AXI_HP<n>_FPD),
#       n from HP_PORT_MAP (below): the two parameter streams (ABI version 2: gmem0 = params,
#       gmem3 = params2, the same buffer) each alone on HP0 and HP2, input (gmem1) and scores
#       (gmem2) together on HP1. HP0/HP1 and HP2/HP3 share a DDR controller port on the
#       Zynq-7000 (UG585), S_AXI_HP1_FPD/HP2_FPD share XPI 4 on the ZU+ (UG1085): HP0 + HP2 is
#       the pair with separate DDR paths (the pair PYNQ's own overlays use), so the two weight
#       streams, which run at the same time, never meet before the DDR controller. gmem1 and
#       gmem2 move data only between the engine calls (input loads, score writes), never while
#       a weight stream runs, so sharing HP1 (and HP0's DDR port) costs no bandwidth; keeping
#       them off HP0 and HP2 leaves each parameter master a 1:1 interconnect (no arbiter).
#   bnn_kernel_0/interrupt -> axi_intc_0/intr ; axi_intc_0/irq -> PS IRQ_F2P | pl_ps_irq0
#   FCLK_CLK0 | pl_clk0 (FCLK_MHZ) clocks everything; proc_sys_reset from FCLK_RESET0_N | pl_resetn0

set KERNEL_VLNV_GLOB "pynq-bnn:hls:bnn_kernel:*"
set KERNEL_INSTANCE  bnn_kernel_0
set DESIGN           bnn

proc die {msg} {
    puts "ERROR: \[pynq-bnn\] $msg"
    exit 1
}

# Which PS slave port (HP<n>) each kernel m_axi bundle uses; bundles on the same port share one
# interconnect (N:1). A board file may set its own HP_PORT_MAP. A bundle not in the map is
# refused: the map is deliberate, not "next free port".
set HP_PORT_MAP_DEFAULT {gmem0 0 gmem3 2 gmem1 1 gmem2 1}
# Implementation strategy: the XC7Z020 build is ~72% LUT (hls_src/README.md, resource ESTIMATE)
# with wide XNOR-popcount trees at 100 MHz; the explore strategy with post-route phys_opt gives
# the most slack for that (UG904, "Implementation Strategies"). A board file may override
# IMPL_STRATEGY / SYNTH_STRATEGY, and so may the environment (PYNQ_BNN_IMPL_STRATEGY,
# PYNQ_BNN_SYNTH_STRATEGY).
set IMPL_STRATEGY_DEFAULT  Performance_ExplorePostRoutePhysOpt
set SYNTH_STRATEGY_DEFAULT Flow_PerfOptimized_high

proc note {msg} {
    puts "INFO: \[pynq-bnn\] $msg"
}

# The VLNV of the newest version of a Xilinx IP in the catalog (e.g. xilinx.com:ip:axi_intc:4.1).
proc ipdef {name} {
    set defs [get_ipdefs -quiet -filter "VLNV =~ xilinx.com:ip:${name}:*"]
    if {[llength $defs] == 0} { die "IP xilinx.com:ip:$name not in the catalog" }
    return [lindex [lsort -dictionary $defs] end]
}

# ------------------------------------------------------------------------------ arguments
if {[llength $argv] < 3} {
    die "usage: vivado -mode batch -source build_overlay.tcl -tclargs <board> <ip_repo> <out_dir> \[jobs\]"
}
set board   [lindex $argv 0]
set ip_repo [file normalize [lindex $argv 1]]
set out_dir [file normalize [lindex $argv 2]]
set jobs    [expr {[llength $argv] > 3 ? [lindex $argv 3] : 4}]

set script_dir [file dirname [file normalize [info script]]]
set board_file [file join $script_dir boards ${board}.tcl]
if {![file exists $board_file]} { die "no board file $board_file" }
source $board_file
foreach var {BOARD_NAME PART BOARD_PART_GLOB PS_KIND FCLK_MHZ CTRL_BASE INTC_BASE IO_PLL_MHZ
             PS_FALLBACK_CONFIG} {
    if {![info exists $var]} { die "$board_file does not set $var" }
}
if {![info exists HP_PORT_MAP]} { set HP_PORT_MAP $HP_PORT_MAP_DEFAULT }
if {![info exists IMPL_STRATEGY]} { set IMPL_STRATEGY $IMPL_STRATEGY_DEFAULT }
if {![info exists SYNTH_STRATEGY]} { set SYNTH_STRATEGY $SYNTH_STRATEGY_DEFAULT }
if {[info exists ::env(PYNQ_BNN_IMPL_STRATEGY)]} { set IMPL_STRATEGY $::env(PYNQ_BNN_IMPL_STRATEGY) }
if {[info exists ::env(PYNQ_BNN_SYNTH_STRATEGY)]} { set SYNTH_STRATEGY $::env(PYNQ_BNN_SYNTH_STRATEGY) }
if {![file isdirectory $ip_repo]} { die "IP repository $ip_repo does not exist (run Vitis HLS first)" }
note "board $board ($BOARD_NAME), part $PART, Vivado [version -short], ip_repo $ip_repo"

# ------------------------------------------------------------------------------ project
set proj_name bnn_${board}
set proj_dir  [file normalize [file join [pwd] $board]]
create_project -force $proj_name $proj_dir -part $PART

set board_part ""
if {$BOARD_PART_GLOB ne ""} {
    set board_part [lindex [lsort -dictionary [get_board_parts -quiet $BOARD_PART_GLOB]] end]
}
if {$board_part ne ""} {
    set_property board_part $board_part [current_project]
    note "board part $board_part (its PS preset is applied)"
} else {
    puts "WARNING: \[pynq-bnn\] no board files match $BOARD_PART_GLOB: using the part only and\
          the fallback PS settings of $board_file (see README.md, 'Board files')"
}

set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild
set kernel_vlnv [lindex [lsort -dictionary [get_ipdefs -quiet -filter "VLNV =~ $KERNEL_VLNV_GLOB"]] end]
if {$kernel_vlnv eq ""} { die "no $KERNEL_VLNV_GLOB in $ip_repo (did Vitis HLS export the IP?)" }
note "kernel IP $kernel_vlnv"

create_bd_design $DESIGN
current_bd_design $DESIGN

# ------------------------------------------------------------------------------ the kernel
set kernel [create_bd_cell -type ip -vlnv $kernel_vlnv $KERNEL_INSTANCE]
set masters [lsort -dictionary [get_bd_intf_pins -of_objects $kernel \
    -filter {MODE == Master && VLNV =~ "xilinx.com:interface:aximm_rtl:*"}]]
set n_masters [llength $masters]
if {$n_masters < 1 || $n_masters > 4} {
    die "the kernel has $n_masters m_axi ports; this flow maps 1..4 of them onto HP ports"
}
# HP port of every master (HP_PORT_MAP), and the masters of every used HP port, in port order.
set hp_of [dict create]
foreach m $masters {
    set bundle [string range [file tail $m] [string length m_axi_] end]
    if {![dict exists $HP_PORT_MAP $bundle]} {
        die "kernel m_axi bundle $bundle has no HP port in HP_PORT_MAP ($HP_PORT_MAP)"
    }
    set n [dict get $HP_PORT_MAP $bundle]
    if {$n ni {0 1 2 3}} { die "HP_PORT_MAP: $bundle -> HP$n (0..3)" }
    dict lappend hp_of $n $m
}
set hp_used [lsort -integer [dict keys $hp_of]]
foreach pin {s_axi_control ap_clk ap_rst_n interrupt} {
    if {[get_bd_intf_pins -quiet $kernel/$pin] eq "" && [get_bd_pins -quiet $kernel/$pin] eq ""} {
        die "the kernel IP has no $pin port (expected from Vitis HLS: s_axilite bundle control, ap_ctrl_hs)"
    }
}
note "kernel m_axi ports: $masters"
foreach n $hp_used { note "HP$n <- [dict get $hp_of $n]" }

# ------------------------------------------------------------------------------ processing system
if {$PS_KIND eq "ps7"} {
    set ps [create_bd_cell -type ip -vlnv [ipdef processing_system7] processing_system7_0]
    if {$board_part ne ""} {
        apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
            -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps
    } else {
        set_property -dict $PS_FALLBACK_CONFIG $ps
        make_bd_intf_pins_external [get_bd_intf_pins $ps/DDR] [get_bd_intf_pins $ps/FIXED_IO]
    }
    set cfg [list CONFIG.PCW_USE_M_AXI_GP0 {1} CONFIG.PCW_USE_M_AXI_GP1 {0} \
                  CONFIG.PCW_FPGA_FCLK0_ENABLE {1} CONFIG.PCW_EN_CLK0_PORT {1} CONFIG.PCW_EN_RST0_PORT {1} \
                  CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $FCLK_MHZ CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC {IO PLL} \
                  CONFIG.PCW_USE_FABRIC_INTERRUPT {1} CONFIG.PCW_IRQ_F2P_INTR {1}]
    for {set i 0} {$i < 4} {incr i} {
        lappend cfg CONFIG.PCW_USE_S_AXI_HP$i [expr {$i in $hp_used ? 1 : 0}]
        if {$i in $hp_used} { lappend cfg CONFIG.PCW_S_AXI_HP${i}_DATA_WIDTH {64} }
    }
    set_property -dict $cfg $ps
    set ps_clk      $ps/FCLK_CLK0
    set ps_resetn   $ps/FCLK_RESET0_N
    set ps_master   $ps/M_AXI_GP0
    set ps_irq      $ps/IRQ_F2P
    set ps_clk_ins  [list $ps/M_AXI_GP0_ACLK]
    set ps_slaves   {}
    foreach i $hp_used {
        lappend ps_slaves $ps/S_AXI_HP$i
        lappend ps_clk_ins $ps/S_AXI_HP${i}_ACLK
    }
    set ps_data     $ps/Data
} elseif {$PS_KIND eq "zynq_ultra_ps_e"} {
    set ps [create_bd_cell -type ip -vlnv [ipdef zynq_ultra_ps_e] zynq_ultra_ps_e_0]
    if {$board_part ne ""} {
        apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps
    } elseif {[llength $PS_FALLBACK_CONFIG] > 0} {
        set_property -dict $PS_FALLBACK_CONFIG $ps
    }
    # HPM0_FPD for control only (HPM1_FPD and HPM0_LPD off, whatever the preset enabled);
    # S_AXI_GP2..5 are S_AXI_HP0_FPD..HP3_FPD (GP0/GP1 are the coherent HPC ports: not used).
    set cfg [list CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} CONFIG.PSU__USE__M_AXI_GP2 {0} \
                  CONFIG.PSU__FPGA_PL0_ENABLE {1} CONFIG.PSU__CRL_APB__PL0_REF_CTRL__SRCSEL {IOPLL} \
                  CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $FCLK_MHZ CONFIG.PSU__USE__IRQ0 {1}]
    for {set i 0} {$i < 4} {incr i} {
        set gp [expr {$i + 2}]
        lappend cfg CONFIG.PSU__USE__S_AXI_GP$gp [expr {$i in $hp_used ? 1 : 0}]
        if {$i in $hp_used} { lappend cfg CONFIG.PSU__SAXIGP${gp}__DATA_WIDTH {64} }
    }
    set_property -dict $cfg $ps
    set ps_clk      $ps/pl_clk0
    set ps_resetn   $ps/pl_resetn0
    set ps_master   $ps/M_AXI_HPM0_FPD
    set ps_irq      $ps/pl_ps_irq0
    set ps_clk_ins  [list $ps/maxihpm0_fpd_aclk]
    set ps_slaves   {}
    foreach i $hp_used {
        lappend ps_slaves $ps/S_AXI_HP${i}_FPD
        lappend ps_clk_ins $ps/saxihp${i}_fpd_aclk
    }
    set ps_data     $ps/Data
} else {
    die "PS_KIND $PS_KIND: expected ps7 or zynq_ultra_ps_e"
}

# ------------------------------------------------------------------------------ infrastructure
set rst  [create_bd_cell -type ip -vlnv [ipdef proc_sys_reset] rst_ps_${FCLK_MHZ}M]
set intc [create_bd_cell -type ip -vlnv [ipdef axi_intc] axi_intc_0]
set ctrl_ic [create_bd_cell -type ip -vlnv [ipdef axi_interconnect] ctrl_interconnect]
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {2}] $ctrl_ic

set mem_ics {}
foreach n $hp_used {
    # One interconnect per used HP port, one slave interface per kernel master on that port:
    # pass-through (1:1) or arbitration (N:1) plus the couplers the HP port needs (AXI4 -> AXI3
    # on Zynq-7000, 64-bit HLS addresses -> the PS's narrower ones). Bursts stay 64-bit wide
    # (the 32-bit scores master is upsized by the interconnect).
    set ic [create_bd_cell -type ip -vlnv [ipdef axi_interconnect] mem_interconnect_hp$n]
    set_property -dict [list CONFIG.NUM_SI [llength [dict get $hp_of $n]] CONFIG.NUM_MI {1}] $ic
    lappend mem_ics $ic
}

# ------------------------------------------------------------------------------ AXI connections
connect_bd_intf_net [get_bd_intf_pins $ps_master] [get_bd_intf_pins $ctrl_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins $ctrl_ic/M00_AXI] [get_bd_intf_pins $kernel/s_axi_control]
connect_bd_intf_net [get_bd_intf_pins $ctrl_ic/M01_AXI] [get_bd_intf_pins $intc/s_axi]
foreach n $hp_used ic $mem_ics ps_slave $ps_slaves {
    set si 0
    foreach m [dict get $hp_of $n] {
        connect_bd_intf_net [get_bd_intf_pins $m] [get_bd_intf_pins $ic/[format S%02d_AXI $si]]
        incr si
    }
    connect_bd_intf_net [get_bd_intf_pins $ic/M00_AXI] [get_bd_intf_pins $ps_slave]
}

# ------------------------------------------------------------------------------ clock, reset, interrupt
set infra [concat [list $kernel $intc $ctrl_ic $rst] $mem_ics]
set clk_pins [list [get_bd_pins $ps_clk]]
foreach p $ps_clk_ins { lappend clk_pins [get_bd_pins $p] }
foreach cell $infra {
    foreach p [get_bd_pins -quiet -of_objects $cell -filter {TYPE == clk && DIR == I}] { lappend clk_pins $p }
}
connect_bd_net {*}$clk_pins

connect_bd_net [get_bd_pins $ps_resetn] [get_bd_pins $rst/ext_reset_in]
set ic_resets [list [get_bd_pins $rst/interconnect_aresetn]]
set periph_resets [list [get_bd_pins $rst/peripheral_aresetn] [get_bd_pins $kernel/ap_rst_n] \
                        [get_bd_pins $intc/s_axi_aresetn]]
foreach ic [concat [list $ctrl_ic] $mem_ics] {
    lappend ic_resets [get_bd_pins $ic/ARESETN]
    foreach p [get_bd_pins -of_objects $ic -filter {TYPE == rst && DIR == I && NAME != ARESETN}] {
        lappend periph_resets $p
    }
}
connect_bd_net {*}$ic_resets
connect_bd_net {*}$periph_resets

# The HLS interrupt (level, ap_done/ap_ready per IP_IER) through an AXI INTC into the PS: the
# layout pynq.Interrupt expects (PYNQ_NOTES section 4). With one source no xlconcat is needed.
connect_bd_net [get_bd_pins $kernel/interrupt] [get_bd_pins $intc/intr]
connect_bd_net [get_bd_pins $intc/irq] [get_bd_pins $ps_irq]

# ------------------------------------------------------------------------------ addresses
# Control registers at fixed addresses (64 KiB each: REGISTER_SPAN in pynq_bnn/spec/abi.py), then
# every kernel master gets every PS memory segment its HP port offers (all of DDR).
assign_bd_address -offset $CTRL_BASE -range 0x00010000 -target_address_space [get_bd_addr_spaces $ps_data] \
    [get_bd_addr_segs $kernel/s_axi_control/Reg] -force
assign_bd_address -offset $INTC_BASE -range 0x00010000 -target_address_space [get_bd_addr_spaces $ps_data] \
    [get_bd_addr_segs $intc/S_AXI/Reg] -force
assign_bd_address
foreach space [get_bd_addr_spaces -of_objects $kernel] {
    set segs [get_bd_addr_segs -quiet -of_objects $space]
    if {[llength $segs] == 0} { die "kernel address space $space sees no memory" }
    foreach seg $segs {
        note "address $space: [get_property OFFSET $seg] + [get_property RANGE $seg] -> [get_property NAME $seg]"
    }
}

validate_bd_design
save_bd_design

# ------------------------------------------------------------------------------ clock plan check
if {$PS_KIND eq "ps7"} {
    set act_mhz [get_property CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ $ps]
    set io_pll  [get_property CONFIG.PCW_IO_IO_PLL_FREQMHZ $ps]
    note "FCLK_CLK0 $act_mhz MHz (div [get_property CONFIG.PCW_FCLK0_PERIPHERAL_DIVISOR0 $ps] x\
          [get_property CONFIG.PCW_FCLK0_PERIPHERAL_DIVISOR1 $ps]) from IO PLL $io_pll MHz"
} else {
    set act_mhz [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps]
    set io_pll  {}
    note "pl_clk0 $act_mhz MHz"
}
if {abs($act_mhz - $FCLK_MHZ) > 0.01 * $FCLK_MHZ} {
    die "the kernel clock is $act_mhz MHz, not the $FCLK_MHZ MHz the HLS kernel was built for"
}
if {$IO_PLL_MHZ ne "" && abs($io_pll - $IO_PLL_MHZ) > 1} {
    # PYNQ 3.x writes the .hwh's FCLK0 divisors into the PS unchanged: with another IO PLL on the
    # board the kernel would run at the wrong clock (too fast: timing failures).
    die "IO PLL $io_pll MHz, but the $BOARD_NAME image runs it at $IO_PLL_MHZ MHz; install the\
         board files (README.md) or fix PS_FALLBACK_CONFIG in $board_file"
}

# ------------------------------------------------------------------------------ synthesis, implementation
set bd_file [get_files ${DESIGN}.bd]
set_property synth_checkpoint_mode None $bd_file
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
if {![file exists $wrapper]} {
    set wrapper [lindex [glob -nocomplain $proj_dir/${proj_name}.gen/sources_1/bd/$DESIGN/hdl/${DESIGN}_wrapper.v \
                                           $proj_dir/${proj_name}.srcs/sources_1/bd/$DESIGN/hdl/${DESIGN}_wrapper.v] 0]
}
add_files -norecurse $wrapper
set_property top ${DESIGN}_wrapper [current_fileset]
update_compile_order -fileset sources_1

set_property strategy $SYNTH_STRATEGY [get_runs synth_1]
set_property strategy $IMPL_STRATEGY [get_runs impl_1]
note "strategies: synth_1 $SYNTH_STRATEGY, impl_1 $IMPL_STRATEGY"
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
foreach run {synth_1 impl_1} {
    if {[get_property PROGRESS [get_runs $run]] ne "100%"} {
        die "$run did not complete: [get_property STATUS [get_runs $run]] (see $proj_dir/${proj_name}.runs/$run/runme.log)"
    }
}

open_run impl_1
set reports [file join $proj_dir reports]
file mkdir $reports
report_utilization    -file [file join $reports utilization.rpt]
report_timing_summary -file [file join $reports timing_summary.rpt]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
note "timing: WNS $wns ns, WHS $whs ns"
if {$wns eq "" || $wns < 0 || $whs eq "" || $whs < 0} {
    die "timing not met (WNS $wns, WHS $whs): no bitstream is installed; see $reports/timing_summary.rpt"
}

# ------------------------------------------------------------------------------ outputs
set impl_dir [get_property DIRECTORY [get_runs impl_1]]
set bit [file join $impl_dir ${DESIGN}_wrapper.bit]
set hwh [lindex [glob -nocomplain $proj_dir/${proj_name}.gen/sources_1/bd/$DESIGN/hw_handoff/${DESIGN}.hwh \
                                   $proj_dir/${proj_name}.srcs/sources_1/bd/$DESIGN/hw_handoff/${DESIGN}.hwh] 0]
if {![file exists $bit]} { die "no bitstream at $bit" }
if {$hwh eq ""} { die "no hw_handoff/${DESIGN}.hwh under $proj_dir" }

file mkdir $out_dir
file copy -force $bit [file join $out_dir bnn.bit]
file copy -force $hwh [file join $out_dir bnn.hwh]

set util [report_utilization -return_string]
proc util_of {text name} {
    if {[regexp -line "^\\|\\s*${name}\\s*\\|\\s*(\[0-9.\]+)\\s*\\|" $text -> used]} { return $used }
    return null
}
set fh [open [file join $out_dir bnn.json] w]
puts $fh "{"
puts $fh "  \"board\": \"$BOARD_NAME\","
puts $fh "  \"part\": \"$PART\","
puts $fh "  \"board_part\": \"$board_part\","
puts $fh "  \"kernel_vlnv\": \"$kernel_vlnv\","
puts $fh "  \"kernel_m_axi_ports\": [llength $masters],"
set hp_json {}
foreach m $masters { lappend hp_json "\"[file tail $m]\": \"HP[dict get $HP_PORT_MAP [string range [file tail $m] 6 end]]\"" }
puts $fh "  \"hp_ports\": {[join $hp_json {, }]},"
puts $fh "  \"impl_strategy\": \"$IMPL_STRATEGY\","
puts $fh "  \"ctrl_base\": \"$CTRL_BASE\","
puts $fh "  \"fclk_mhz\": $act_mhz,"
puts $fh "  \"wns_ns\": $wns,"
puts $fh "  \"whs_ns\": $whs,"
puts $fh "  \"luts\": [util_of $util {(?:Slice|CLB) LUTs\*?}],"
puts $fh "  \"bram_tiles\": [util_of $util {Block RAM Tile}],"
puts $fh "  \"dsps\": [util_of $util DSPs],"
puts $fh "  \"vivado\": \"[version -short]\","
puts $fh "  \"built\": \"[clock format [clock seconds] -format {%Y-%m-%dT%H:%M:%SZ} -gmt 1]\""
puts $fh "}"
close $fh

note "wrote [file join $out_dir bnn.bit], bnn.hwh, bnn.json"
