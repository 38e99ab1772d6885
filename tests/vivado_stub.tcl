# A stand-in for the Vivado Tcl commands that overlays/build_overlay.tcl uses, for plain tclsh.
#
# It is NOT Vivado: it models just enough of a block design (cells, pins, nets, address
# segments, properties) to run the script's control flow end to end and record what it built, so
# tests/test_overlay_flow.py can check the wiring (every m_axi bundle on its mapped HP port, the interrupt
# through an AXI INTC, addresses, clocks) for every board file. Whether Vivado accepts the same
# commands is only known once someone runs the flow with Vivado (overlays/README.md).
#
#   tclsh vivado_stub.tcl <record.json> <script> <args...>
#
# Environment: STUB_BOARD_PARTS (board parts "installed"), STUB_KERNEL_MAXI (kernel m_axi
# bundle names, default "gmem0 gmem1 gmem2 gmem3"), STUB_IO_PLL_MHZ (IO PLL the PS7 reports, default: 1000
# with a board preset or a 50 MHz crystal, else 1600), STUB_WNS (timing slack, default 0.25).

set ::record_file [lindex $argv 0]
set ::script      [lindex $argv 1]
set argv [lrange $argv 2 end]
set argc [llength $argv]

proc env_or {name default} {
    if {[info exists ::env($name)]} { return $::env($name) }
    return $default
}

set ::log {}
set ::cells [dict create]        ;# /name -> vlnv
set ::pins [dict create]         ;# /cell/pin -> {kind intf|net mode/dir type ...}
set ::props [dict create]        ;# object -> dict of property -> value
set ::intf_nets {}
set ::nets {}
set ::addr {}                    ;# list of {space seg offset range}
set ::board_part ""
set ::preset_applied 0
set ::proj_dir ""
set ::proj_name ""

proc rec {args} { lappend ::log $args }

proc version {args} { return "2022.2" }
proc create_project {args} {
    set pos {}
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        if {$a eq "-part"} { incr i } elseif {[string index $a 0] ne "-"} { lappend pos $a }
    }
    lassign $pos ::proj_name ::proj_dir
    file mkdir $::proj_dir
    rec create_project {*}$args
}
proc current_project {args} { return project }
proc get_board_parts {args} {
    set pattern [lindex $args end]
    set out {}
    foreach bp [env_or STUB_BOARD_PARTS ""] {
        if {[string match $pattern $bp]} { lappend out $bp }
    }
    return $out
}
proc update_ip_catalog {args} { rec update_ip_catalog }

set ::catalog {xilinx.com:ip:processing_system7:5.5 xilinx.com:ip:zynq_ultra_ps_e:3.4
               xilinx.com:ip:proc_sys_reset:5.0 xilinx.com:ip:axi_intc:4.1
               xilinx.com:ip:axi_interconnect:2.1 pynq-bnn:hls:bnn_kernel:1.0}
proc get_ipdefs {args} {
    set filter [lindex $args [expr {[lsearch $args -filter] + 1}]]
    if {![regexp {VLNV =~ "?([^"]+)"?} $filter -> pattern]} { error "stub: filter $filter" }
    set out {}
    foreach v $::catalog { if {[string match $pattern $v]} { lappend out $v } }
    return $out
}

proc create_bd_design {name} { rec create_bd_design $name }
proc current_bd_design {args} { return bnn }
proc save_bd_design {args} { rec save_bd_design }
proc validate_bd_design {args} {
    # Every clock and reset input that exists must be driven (what Vivado's validation enforces).
    foreach {pin info} $::pins {
        if {[dict get $info kind] eq "net" && [dict get $info dir] eq "I"
            && [dict get $info type] in {clk rst} && ![pin_connected $pin]} {
            if {[string match */processor_* $pin]} { continue }
            error "stub validate_bd_design: $pin ([dict get $info type]) is not connected"
        }
    }
    rec validate_bd_design
}

proc add_pin {cell name kind args} {
    dict set ::pins $cell/$name [dict merge [dict create kind $kind dir I type undef mode ""] $args]
}

proc ps7_ports {cell} {
    set p [dict get $::props $cell]
    foreach {n d t} {FCLK_CLK0 O clk FCLK_RESET0_N O rst IRQ_F2P I intr M_AXI_GP0_ACLK I clk} {
        add_pin $cell $n net dir $d type $t
    }
    add_pin $cell M_AXI_GP0 intf mode Master
    add_pin $cell DDR intf mode Master
    add_pin $cell FIXED_IO intf mode Master
    for {set i 0} {$i < 4} {incr i} {
        if {[dict exists $p CONFIG.PCW_USE_S_AXI_HP$i] && [dict get $p CONFIG.PCW_USE_S_AXI_HP$i]} {
            add_pin $cell S_AXI_HP$i intf mode Slave
            add_pin $cell S_AXI_HP${i}_ACLK net dir I type clk
        } else {
            dict unset ::pins $cell/S_AXI_HP$i
            dict unset ::pins $cell/S_AXI_HP${i}_ACLK
        }
    }
}

proc zup_ports {cell} {
    set p [dict get $::props $cell]
    foreach {n d t} {pl_clk0 O clk pl_resetn0 O rst pl_ps_irq0 I intr maxihpm0_fpd_aclk I clk} {
        add_pin $cell $n net dir $d type $t
    }
    add_pin $cell M_AXI_HPM0_FPD intf mode Master
    if {$::preset_applied && !([dict exists $p CONFIG.PSU__USE__M_AXI_GP1] && ![dict get $p CONFIG.PSU__USE__M_AXI_GP1])} {
        # a board preset that enables HPM1_FPD: its clock would need a driver
        add_pin $cell M_AXI_HPM1_FPD intf mode Master
        add_pin $cell maxihpm1_fpd_aclk net dir I type clk
    } else {
        dict unset ::pins $cell/M_AXI_HPM1_FPD
        dict unset ::pins $cell/maxihpm1_fpd_aclk
    }
    for {set i 0} {$i < 4} {incr i} {
        set gp [expr {$i + 2}]
        if {[dict exists $p CONFIG.PSU__USE__S_AXI_GP$gp] && [dict get $p CONFIG.PSU__USE__S_AXI_GP$gp]} {
            add_pin $cell S_AXI_HP${i}_FPD intf mode Slave
            add_pin $cell saxihp${i}_fpd_aclk net dir I type clk
        } else {
            dict unset ::pins $cell/S_AXI_HP${i}_FPD
            dict unset ::pins $cell/saxihp${i}_fpd_aclk
        }
    }
}

proc interconnect_ports {cell} {
    set p [dict get $::props $cell]
    set nsi [expr {[dict exists $p CONFIG.NUM_SI] ? [dict get $p CONFIG.NUM_SI] : 1}]
    set nmi [expr {[dict exists $p CONFIG.NUM_MI] ? [dict get $p CONFIG.NUM_MI] : 2}]
    foreach k [dict keys $::pins $cell/*] { dict unset ::pins $k }
    add_pin $cell ACLK net type clk
    add_pin $cell ARESETN net type rst
    for {set i 0} {$i < $nsi} {incr i} {
        set n [format S%02d $i]
        add_pin $cell ${n}_AXI intf mode Slave
        add_pin $cell ${n}_ACLK net type clk
        add_pin $cell ${n}_ARESETN net type rst
    }
    for {set i 0} {$i < $nmi} {incr i} {
        set n [format M%02d $i]
        add_pin $cell ${n}_AXI intf mode Master
        add_pin $cell ${n}_ACLK net type clk
        add_pin $cell ${n}_ARESETN net type rst
    }
}

proc refresh_ports {cell} {
    set vlnv [dict get $::cells $cell]
    switch -glob $vlnv {
        *:processing_system7:* { ps7_ports $cell }
        *:zynq_ultra_ps_e:* { zup_ports $cell }
        *:axi_interconnect:* { interconnect_ports $cell }
    }
}

proc create_bd_cell {args} {
    set vlnv [lindex $args [expr {[lsearch $args -vlnv] + 1}]]
    set name [lindex $args end]
    set cell /$name
    if {[lsearch $::catalog $vlnv] < 0} { error "stub: $vlnv not in the catalog" }
    dict set ::cells $cell $vlnv
    dict set ::props $cell [dict create VLNV $vlnv]
    switch -glob $vlnv {
        *:bnn_kernel:* {
            add_pin $cell s_axi_control intf mode Slave
            foreach b [env_or STUB_KERNEL_MAXI "gmem0 gmem1 gmem2 gmem3"] {
                add_pin $cell m_axi_$b intf mode Master vlnv xilinx.com:interface:aximm_rtl:1.0
            }
            add_pin $cell ap_clk net type clk
            add_pin $cell ap_rst_n net type rst
            add_pin $cell interrupt net dir O type intr
        }
        *:proc_sys_reset:* {
            add_pin $cell slowest_sync_clk net type clk
            add_pin $cell ext_reset_in net type rst
            add_pin $cell interconnect_aresetn net dir O type rst
            add_pin $cell peripheral_aresetn net dir O type rst
        }
        *:axi_intc:* {
            add_pin $cell s_axi intf mode Slave
            add_pin $cell s_axi_aclk net type clk
            add_pin $cell s_axi_aresetn net type rst
            add_pin $cell intr net type intr
            add_pin $cell irq net dir O type intr
        }
    }
    refresh_ports $cell
    rec create_bd_cell $vlnv $cell
    return $cell
}

proc apply_bd_automation {args} {
    if {$::board_part eq ""} { error "stub: board preset without a board part" }
    set ::preset_applied 1
    refresh_ports [lindex $args end]
    rec apply_bd_automation {*}$args
}
proc make_bd_intf_pins_external {args} { rec make_bd_intf_pins_external {*}$args }

proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        set kv [lindex $args 1]
        set objs [lindex $args 2]
    } else {
        set kv [list [lindex $args 0] [lindex $args 1]]
        set objs [lindex $args 2]
    }
    if {[llength $kv] % 2} { error "stub set_property: odd key/value list $kv" }
    foreach obj $objs {
        if {$obj eq "project"} {
            foreach {k v} $kv { if {$k eq "board_part"} { set ::board_part $v } }
            continue
        }
        if {![dict exists $::props $obj]} { dict set ::props $obj [dict create] }
        foreach {k v} $kv { dict set ::props $obj $k $v }
        if {[dict exists $::cells $obj]} { refresh_ports $obj }
    }
    rec set_property {*}$args
}

proc filter_match {info name filter} {
    # Vivado -filter subset: clauses "PROP == v", "PROP != v", "PROP =~ glob" joined by &&.
    if {$filter eq ""} { return 1 }
    set vals [dict create TYPE [dict get $info type] DIR [dict get $info dir] NAME $name \
                  MODE [dict get $info mode] \
                  VLNV [expr {[dict exists $info vlnv] ? [dict get $info vlnv] : ""}]]
    foreach clause [split [string map {&& \x01} $filter] \x01] {
        if {![regexp {^\s*(\w+)\s*(==|!=|=~)\s*"?([^"]*?)"?\s*$} $clause -> prop op want]} {
            error "stub: cannot parse filter clause '$clause'"
        }
        set have [dict get $vals $prop]
        switch -- $op {
            == { if {$have ne $want} { return 0 } }
            != { if {$have eq $want} { return 0 } }
            =~ { if {![string match $want $have]} { return 0 } }
        }
    }
    return 1
}

proc get_pins_of {kind args} {
    set quiet [expr {[lsearch $args -quiet] >= 0}]
    set args [lsearch -all -inline -not $args -quiet]
    set filter ""
    if {[set i [lsearch $args -filter]] >= 0} { set filter [lindex $args [expr {$i + 1}]] }
    if {[set i [lsearch $args -of_objects]] >= 0} {
        set cell [lindex $args [expr {$i + 1}]]
        set out {}
        foreach k [lsort [dict keys $::pins $cell/*]] {
            set info [dict get $::pins $k]
            if {[dict get $info kind] eq $kind && [filter_match $info [file tail $k] $filter]} {
                lappend out $k
            }
        }
        return $out
    }
    set out {}
    foreach p $args {
        if {[string index $p 0] ne "/"} { set p /$p }
        if {[dict exists $::pins $p] && [dict get $::pins $p kind] eq $kind} { lappend out $p
        } elseif {!$quiet} { error "stub: no $kind pin $p" }
    }
    return $out
}
proc get_bd_intf_pins {args} { return [get_pins_of intf {*}$args] }
proc get_bd_pins {args} { return [get_pins_of net {*}$args] }

proc pin_connected {pin} {
    foreach n [concat $::nets $::intf_nets] { if {[lsearch -exact $n $pin] >= 0} { return 1 } }
    return 0
}
proc connect_bd_intf_net {args} {
    set args [lsearch -all -inline -not -glob $args -*]
    if {[llength $args] != 2} { error "stub connect_bd_intf_net: $args" }
    foreach p $args {
        if {![dict exists $::pins $p] || [dict get $::pins $p kind] ne "intf"} { error "stub: no intf pin $p" }
        if {[pin_connected $p]} { error "stub: $p connected twice" }
    }
    lappend ::intf_nets $args
}
proc connect_bd_net {args} {
    set args [lsearch -all -inline -not -glob $args -*]
    if {[llength $args] < 2} { error "stub connect_bd_net: fewer than 2 pins: $args" }
    set drivers 0
    foreach p $args {
        if {![dict exists $::pins $p] || [dict get $::pins $p kind] ne "net"} { error "stub: no pin $p" }
        if {[pin_connected $p]} { error "stub: $p connected twice" }
        if {[dict get $::pins $p dir] eq "O"} { incr drivers }
    }
    if {$drivers != 1} { error "stub connect_bd_net: $drivers drivers on $args" }
    lappend ::nets $args
}

# Address spaces: the PS data space, and one per kernel m_axi port.
proc get_bd_addr_spaces {args} {
    if {[set i [lsearch $args -of_objects]] >= 0} {
        set cell [lindex $args [expr {$i + 1}]]
        set out {}
        foreach p [get_pins_of intf -of_objects $cell -filter {MODE == Master}] {
            lappend out $cell/Data_[file tail $p]
        }
        return $out
    }
    return [lindex $args end]
}
proc get_bd_addr_segs {args} {
    if {[set i [lsearch $args -of_objects]] >= 0} {
        set space [lindex $args [expr {$i + 1}]]
        set out {}
        foreach a $::addr { if {[lindex $a 0] eq $space} { lappend out [lindex $a 1] } }
        return $out
    }
    set seg [lindex $args end]
    # the segment of a slave interface: <cell>/<interface, any case (axi_intc: S_AXI)>/Reg
    if {![regexp {^(/[^/]+)/([^/]+)/Reg$} $seg -> cell intf]} { error "stub: no address segment $seg" }
    foreach k [dict keys $::pins $cell/*] {
        if {[string equal -nocase $k $cell/$intf] && [dict get $::pins $k mode] eq "Slave"} { return $seg }
    }
    error "stub: no address segment $seg"
}
proc assign_bd_address {args} {
    if {[llength $args] == 0} {
        # the kernel's master spaces each get the segments of the PS slave port they reach
        foreach net $::intf_nets {
            lassign $net a b
            if {[string match /bnn_kernel_0/m_axi_* $a]} {
                set ic [file dirname $b]
                foreach n $::intf_nets {
                    if {[lindex $n 0] eq "$ic/M00_AXI"} {
                        set hp [lindex $n 1]
                        lappend ::addr [list /bnn_kernel_0/Data_[file tail $a] $hp/DDR 0x00000000 0x20000000]
                    }
                }
            }
        }
        rec assign_bd_address all
        return
    }
    set offset [lindex $args [expr {[lsearch $args -offset] + 1}]]
    set range [lindex $args [expr {[lsearch $args -range] + 1}]]
    set space [lindex $args [expr {[lsearch $args -target_address_space] + 1}]]
    set seg [lindex [lsearch -all -inline -not -glob $args -*] end]
    lappend ::addr [list $space $seg $offset $range]
    rec assign_bd_address $space $seg $offset $range
}

proc get_files {args} { return [file join $::proj_dir bnn.bd] }
proc generate_target {args} {
    set dir [file join $::proj_dir $::proj_name.gen sources_1 bd bnn hw_handoff]
    file mkdir $dir
    set f [open [file join $dir bnn.hwh] w]; puts $f "<!-- stub hwh, not a design -->"; close $f
    rec generate_target
}
proc make_wrapper {args} {
    set dir [file join $::proj_dir $::proj_name.gen sources_1 bd bnn hdl]
    file mkdir $dir
    set w [file join $dir bnn_wrapper.v]
    close [open $w w]
    return $w
}
proc add_files {args} { rec add_files {*}$args }
proc update_compile_order {args} {}
proc get_filesets {args} { return sources_1 }
proc current_fileset {args} { return sources_1 }
proc get_runs {name} { return $name }
proc launch_runs {args} {
    set dir [file join $::proj_dir $::proj_name.runs impl_1]
    file mkdir $dir
    set f [open [file join $dir bnn_wrapper.bit] w]; puts $f "stub bitstream, not a bitstream"; close $f
    rec launch_runs {*}$args
}
proc wait_on_run {args} {}
proc open_run {args} {}
proc report_utilization {args} {
    set text "| Slice LUTs*  | 30000 | 0 | 0 | 53200 | 56.39 |\n| Block RAM Tile | 100 | 0 | 0 | 140 | 71.43 |\n| DSPs | 0 | 0 | 0 | 220 | 0.00 |"
    if {[lsearch $args -return_string] >= 0} { return $text }
    set f [open [lindex $args [expr {[lsearch $args -file] + 1}]] w]; puts $f $text; close $f
}
proc report_timing_summary {args} {
    set f [open [lindex $args [expr {[lsearch $args -file] + 1}]] w]; puts $f stub; close $f
}
proc get_timing_paths {args} { return path }

proc get_property {name obj} {
    switch -- $name {
        PROGRESS { return "100%" }
        STATUS { return "write_bitstream Complete!" }
        DIRECTORY { return [file join $::proj_dir $::proj_name.runs impl_1] }
        SLACK { return [env_or STUB_WNS 0.25] }
        OFFSET { foreach a $::addr { if {[lindex $a 1] eq $obj} { return [lindex $a 2] } } }
        RANGE { foreach a $::addr { if {[lindex $a 1] eq $obj} { return [lindex $a 3] } } }
        NAME { return [file tail $obj] }
    }
    set p [dict get $::props $obj]
    switch -- $name {
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ {
            return [format %.6f [dict get $p CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ]]
        }
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ {
            return [format %.6f [dict get $p CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ]]
        }
        CONFIG.PCW_IO_IO_PLL_FREQMHZ {
            set crystal50 [expr {[dict exists $p CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ]
                                 && [dict get $p CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ] == 50}]
            return [env_or STUB_IO_PLL_MHZ [expr {($::preset_applied || $crystal50) ? 1000.0 : 1600.0}]]
        }
        CONFIG.PCW_FCLK0_PERIPHERAL_DIVISOR0 { return 5 }
        CONFIG.PCW_FCLK0_PERIPHERAL_DIVISOR1 { return 2 }
    }
    return [dict get $p $name]
}

proc json_str {s} { return "\"[string map {\\ \\\\ \" \\\"} $s]\"" }
proc json_list {l} {
    set out {}
    foreach x $l { lappend out [json_str $x] }
    return "\[[join $out ,]\]"
}
proc write_record {code} {
    set f [open $::record_file w]
    puts $f "{\"exit\": $code, \"board_part\": [json_str $::board_part], \"preset\": $::preset_applied,"
    set cells {}
    foreach {c v} $::cells { lappend cells "[json_str $c]: [json_str $v]" }
    puts $f " \"cells\": {[join $cells ,]},"
    set props {}
    foreach {o p} $::props {
        set kv {}
        foreach {k v} $p { lappend kv "[json_str $k]: [json_str $v]" }
        lappend props "[json_str $o]: {[join $kv ,]}"
    }
    puts $f " \"props\": {[join $props ,]},"
    set l {}; foreach n $::intf_nets { lappend l [json_list $n] }
    puts $f " \"intf_nets\": \[[join $l ,]\],"
    set l {}; foreach n $::nets { lappend l [json_list $n] }
    puts $f " \"nets\": \[[join $l ,]\],"
    set l {}; foreach a $::addr { lappend l [json_list $a] }
    puts $f " \"addr\": \[[join $l ,]\],"
    set l {}; foreach e $::log { lappend l [json_str $e] }
    puts $f " \"log\": \[[join $l ,]\]}"
    close $f
}

# The script ends with `exit` on errors (die); record the design either way.
rename exit _real_exit
proc exit {{code 0}} { write_record $code; _real_exit $code }
if {[catch {source $::script} msg opts]} {
    puts stderr "stub: script error: $msg\n[dict get $opts -errorinfo]"
    write_record 2
    _real_exit 2
}
write_record 0
