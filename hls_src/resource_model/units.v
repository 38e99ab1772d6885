// Synthesizable Verilog models of the repeated datapath units of the pynq-bnn HLS kernel
// (hls_src/include/bnn_popcount.hpp, bnn_threshold.hpp, bnn_conv.hpp, bnn_dense.hpp), written
// with the same structure as the C++ so that `synth.sh` (Debian's yosys, synth_xilinx -family
// xc7) can measure what one unit costs in XC7 LUTs / CARRY4 / FFs. These are MODELS of the
// units, not the HLS output: Vitis HLS + Vivado will map the real RTL somewhat differently,
// which is why hls_src/README.md asks the first real csynth/Vivado run to report back.
//
// Every module registers its outputs (the HLS pipeline does); accumulators are registers.

// ---------------------------------------------------------------------------- popcount
// (a) SWAR form: the former popcount64_tree (two 32-bit mask-and-add trees + a final adder).
module popcount64_swar(input [63:0] x, output [6:0] p);
    function [5:0] pc32(input [31:0] v0);
        reg [31:0] v;
        begin
            v = (v0 & 32'h55555555) + ((v0 >> 1) & 32'h55555555);
            v = (v & 32'h33333333) + ((v >> 2) & 32'h33333333);
            v = (v & 32'h0F0F0F0F) + ((v >> 4) & 32'h0F0F0F0F);
            v = (v & 32'h00FF00FF) + ((v >> 8) & 32'h00FF00FF);
            pc32 = v[5:0] + v[21:16];
        end
    endfunction
    assign p = pc32(x[31:0]) + pc32(x[63:32]);
endmodule

// (b) LUT6 compressor form: the new popcount64_tree. Level 1 counts each 6-bit field with a
//     table (three LUT6 per field: 0..6 in 3 bits), 10 full fields + one 4-bit field; levels
//     2.. add the 3-bit counts pairwise in a balanced tree (3-, 4-, 5-, 6-bit adders).
module popcount64_lut6(input [63:0] x, output [6:0] p);
    // popcount6 of bnn_popcount.hpp: two full adders and a 2-bit add, as plain logic
    function [2:0] c6(input [5:0] f);
        reg sa, ca, sb, cb, k0;
        begin
            sa = f[0] ^ f[1] ^ f[2]; ca = (f[0] & f[1]) | (f[0] & f[2]) | (f[1] & f[2]);
            sb = f[3] ^ f[4] ^ f[5]; cb = (f[3] & f[4]) | (f[3] & f[5]) | (f[4] & f[5]);
            k0 = sa & sb;
            c6 = {(ca & cb) | (ca & k0) | (cb & k0), ca ^ cb ^ k0, sa ^ sb};
        end
    endfunction
    wire [2:0] c [0:10];
    genvar i;
    generate for (i = 0; i < 10; i = i + 1) begin : g
        assign c[i] = c6(x[6*i+5:6*i]);
    end endgenerate
    assign c[10] = x[60] + x[61] + x[62] + x[63];
    wire [3:0] s0 = c[0] + c[1], s1 = c[2] + c[3], s2 = c[4] + c[5], s3 = c[6] + c[7],
               s4 = c[8] + c[9];
    wire [4:0] t0 = s0 + s1, t1 = s2 + s3, t2 = s4 + c[10];
    wire [5:0] u0 = t0 + t1;
    assign p = u0 + t2;
endmodule

// ---------------------------------------------------------------------------- XNOR-popcount
module xnor_popcount64_swar(input clk, input [63:0] a, input [63:0] w, output reg [6:0] p);
    wire [6:0] q;
    popcount64_swar u(.x(~(a ^ w)), .p(q));
    always @(posedge clk) p <= q;
endmodule

module xnor_popcount64_lut6(input clk, input [63:0] a, input [63:0] w, output reg [6:0] p);
    wire [6:0] q;
    popcount64_lut6 u(.x(~(a ^ w)), .p(q));
    always @(posedge clk) p <= q;
endmodule

// ---------------------------------------------------------------------------- accumulate + threshold
// (a) as the former C++: sum = (first ? 0 : acc) + (valid ? 2p - 64 : 0); bit = neg ? sum <= t : sum >= t
module acc_threshold_dir(input clk, input [6:0] p, input first, input valid,
                         input signed [15:0] t, input neg, output reg bit_out);
    reg signed [15:0] acc;
    wire signed [8:0] contrib = valid ? ($signed({2'b00, p}) <<< 1) - 9'sd64 : 9'sd0;
    wire signed [15:0] sum = (first ? 16'sd0 : acc) + contrib;
    always @(posedge clk) begin
        acc <= sum;
        bit_out <= neg ? (sum <= t) : (sum >= t);
    end
endmodule

// (b) as the new C++: the threshold word is pre-adjusted once per group when it is loaded
//     (t' = t + 1 for direction -1), so each unit has one >= comparator and an XOR:
//     bit = neg ^ (sum >= t').
module acc_threshold_xor(input clk, input [6:0] p, input first, input valid,
                         input signed [15:0] tq, input neg, output reg bit_out);
    reg signed [15:0] acc;
    wire signed [8:0] contrib = valid ? ($signed({2'b00, p}) <<< 1) - 9'sd64 : 9'sd0;
    wire signed [15:0] sum = (first ? 16'sd0 : acc) + contrib;
    always @(posedge clk) begin
        acc <= sum;
        bit_out <= neg ^ (sum >= tq);
    end
endmodule

// ---------------------------------------------------------------------------- pooling
// 2x2 max-pool on thresholded bits of one output word (64 channels): the pair of a pixel pair,
// then merged with the other row's pair (bnn_threshold.hpp pool_combine, twice) + the word
// register that holds the first row.
module pool_word64(input clk, input [63:0] bits_a, input [63:0] bits_b, input [63:0] negmask,
                   input dy, output reg [63:0] merged);
    reg [63:0] row0;
    wire [63:0] pair = ((bits_a | bits_b) & ~negmask) | ((bits_a & bits_b) & negmask);
    wire [63:0] m = ((row0 | pair) & ~negmask) | ((row0 & pair) & negmask);
    always @(posedge clk) begin
        if (!dy) row0 <= pair;
        merged <= dy ? m : pair;
    end
endmodule

// ---------------------------------------------------------------------------- whole units
// One conv filter (PE) over a pixel pair: two XNOR-popcount-accumulate-threshold units that
// share the weight word (bnn_conv.hpp conv_pe loop body), new structure.
module conv_pe_pair(input clk, input [63:0] in_a, input [63:0] in_b, input [63:0] w,
                    input first, input va, input vb, input signed [15:0] tq, input neg,
                    output bit_a, output bit_b);
    wire [6:0] pa, pb;
    xnor_popcount64_lut6 ua(.clk(clk), .a(in_a), .w(w), .p(pa));
    xnor_popcount64_lut6 ub(.clk(clk), .a(in_b), .w(w), .p(pb));
    acc_threshold_xor ta(.clk(clk), .p(pa), .first(first), .valid(va), .tq(tq), .neg(neg), .bit_out(bit_a));
    acc_threshold_xor tb(.clk(clk), .p(pb), .first(first), .valid(vb), .tq(tq), .neg(neg), .bit_out(bit_b));
endmodule

// One dense unit (bnn_dense.hpp dense_images loop body): one image against the weight word.
module dense_unit(input clk, input [63:0] x, input [63:0] w, input first,
                  input signed [15:0] tq, input neg, output bit_out);
    wire [6:0] p;
    xnor_popcount64_lut6 u(.clk(clk), .a(x), .w(w), .p(p));
    acc_threshold_xor t(.clk(clk), .p(p), .first(first), .valid(1'b1), .tq(tq), .neg(neg), .bit_out(bit_out));
endmodule

// The former conv PE pair (SWAR popcount, direction mux comparator), for comparison.
module conv_pe_pair_old(input clk, input [63:0] in_a, input [63:0] in_b, input [63:0] w,
                        input first, input va, input vb, input signed [15:0] t, input neg,
                        output bit_a, output bit_b);
    wire [6:0] pa, pb;
    xnor_popcount64_swar ua(.clk(clk), .a(in_a), .w(w), .p(pa));
    xnor_popcount64_swar ub(.clk(clk), .a(in_b), .w(w), .p(pb));
    acc_threshold_dir ta(.clk(clk), .p(pa), .first(first), .valid(va), .t(t), .neg(neg), .bit_out(bit_a));
    acc_threshold_dir tb(.clk(clk), .p(pb), .first(first), .valid(vb), .t(t), .neg(neg), .bit_out(bit_b));
endmodule
