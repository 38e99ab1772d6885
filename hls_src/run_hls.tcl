# Vitis HLS flow of the pynq-bnn kernel: C simulation, C synthesis, C/RTL co-simulation and
# export as a Vivado IP with the fixed VLNV pynq-bnn:hls:bnn_kernel:1.0 (pynq_bnn.abi.KERNEL_VLNV).
#
# UNTESTED: written for Vitis HLS 2020.2 .. 2023.x, but no Vitis HLS was available where this
# project was developed. The kernel source itself is checked by g++ C simulation
# (make -C hls_src csim) against the numpy reference.
#
# Usage (from hls_src/):
#   make vectors                                   # test vectors for csim (Python)
#   make vectors VECTORS=build/cosim_vectors CASES=c64_b2,odd6_b3   # small set for cosim
#   vitis_hls -f run_hls.tcl                       # csim + csynth + cosim + export, Pynq-Z1/Z2
#   vitis_hls -f run_hls.tcl -tclargs part=xczu3eg-sbva484-1-i steps=csynth,export  # Ultra96-V2
#
# Arguments (key=value after -tclargs):
#   part=<FPGA part>        default xc7z020clg400-1 (Pynq-Z1, Pynq-Z2)
#   period=<ns>             default 10 (100 MHz, the FCLK the overlays use)
#   steps=<list>            comma list of csim,csynth,cosim,export (default: all four)
#   vectors=<dir>           csim vectors (default build/vectors)
#   cosim_vectors=<dir>     cosim vectors (default build/cosim_vectors; keep it small: RTL
#                           simulation of one full-model image takes hours)
#   ap_types=<dir>          not needed: Vitis HLS brings its own ap_int.h
#   project=<name>          default bnn_kernel_prj
#
# Results: <project>/sol1/syn/report/bnn_kernel_csynth.rpt (latency, resources),
# <project>/sol1/impl/ip/*.zip (the IP for the overlay flow in overlays/).

set part xc7z020clg400-1
set period 10
set steps {csim csynth cosim export}
set vectors build/vectors
set cosim_vectors build/cosim_vectors
set project bnn_kernel_prj

# The tools put their own tokens into $argv before (or instead of) the -tclargs ones: depending
# on the version and on how it was started, `-f <script>`, `-tclargs`, `--`, `-l <log>` or the
# script path itself. Those are skipped; every other token must be key=value with a known key
# (a typo must not silently fall back to a default part). tests/test_hls_csim.py runs this
# parser under tclsh with the argument vectors the tools are known to pass.
proc parse_hls_args {args_in} {
    set opts [dict create]
    set skip_next 0
    foreach arg $args_in {
        if {$skip_next} { set skip_next 0; continue }
        # tool options that take a value (vitis_hls -f <file>, -l <log>, -i <file>, -p <project>)
        if {$arg in {-f -l -i -p -source -log -journal}} { set skip_next 1; continue }
        # any other tool flag or separator (-tclargs, --, -nolog, -interactive, ...)
        if {[string index $arg 0] eq "-"} { continue }
        # the script itself (some versions keep it in argv)
        if {[string match *.tcl $arg] && [string first = $arg] < 0} { continue }
        set eq [string first = $arg]
        if {$eq <= 0} { error "argument '$arg' is not key=value (keys: part period steps vectors cosim_vectors ap_types project)" }
        set key [string range $arg 0 [expr {$eq - 1}]]
        set value [string range $arg [expr {$eq + 1}] end]
        if {$key ni {part period steps vectors cosim_vectors ap_types project}} {
            error "unknown argument '$key'"
        }
        dict set opts $key $value
    }
    return $opts
}

set hls_opts [parse_hls_args $argv]
dict for {key value} $hls_opts {
    switch -- $key {
        part          { set part $value }
        period        { set period $value }
        steps         { set steps [split $value ,] }
        vectors       { set vectors $value }
        cosim_vectors { set cosim_vectors $value }
        project       { set project $value }
        ap_types      { }
    }
}
foreach s $steps {
    if {$s ni {csim csynth cosim export}} { error "unknown step '$s' (csim csynth cosim export)" }
}
# Only the parser (tests): stop here.
if {[info exists ::HLS_PARSE_ONLY] && $::HLS_PARSE_ONLY} {
    puts "PARSED part=$part period=$period steps=[join $steps ,] project=$project"
    return
}

set here [file dirname [file normalize [info script]]]
cd $here
set vectors [file normalize $vectors]
set cosim_vectors [file normalize $cosim_vectors]
set cflags "-I$here/include -std=c++14"

open_project -reset $project
set_top bnn_kernel
add_files src/bnn_kernel.cpp -cflags $cflags
foreach h [glob include/*.hpp] { add_files $h -cflags $cflags }
add_files -tb tb/bnn_kernel_tb.cpp -cflags "$cflags -Wno-unknown-pragmas"

open_solution -reset sol1 -flow_target vivado
set_part $part
create_clock -period $period -name default
# m_axi pointers are 64-bit (the Vitis default): every pointer gets a low (_1) and a high (_2)
# AXI-Lite data register, the layout pynq_bnn/abi.py and docs/ABI.md describe.
if {[catch {config_interface -m_axi_addr64=true}]} { config_interface -m_axi_addr64 }
# The fixed VLNV the driver binds to (pynq_bnn.abi.KERNEL_VLNV).
config_export -format ip_catalog -rtl verilog -vendor pynq-bnn -library hls \
    -ipname bnn_kernel -version 1.0 -display_name "pynq-bnn BinaryNet kernel" \
    -description "Binary layers of BinaryNet CIFAR-10, descriptor-driven (pynq-bnn ABI 1)"

if {[lsearch $steps csim] >= 0} {
    if {![file exists $vectors/manifest.txt]} {
        error "no test vectors in $vectors: run 'make vectors' first"
    }
    csim_design -argv $vectors
}
if {[lsearch $steps csynth] >= 0} {
    csynth_design
}
if {[lsearch $steps cosim] >= 0} {
    if {![file exists $cosim_vectors/manifest.txt]} {
        error "no cosim vectors in $cosim_vectors: make vectors VECTORS=$cosim_vectors CASES=c64_b2,odd6_b3"
    }
    cosim_design -argv $cosim_vectors -rtl verilog
}
if {[lsearch $steps export] >= 0} {
    export_design -format ip_catalog -rtl verilog
}
exit
