/**
 * \file bnn_estimate.hpp
 * \brief C-simulation cycle ESTIMATE counters. Everything here vanishes under __SYNTHESIS__.
 *
 * The model (an ESTIMATE, not a synthesis or co-simulation result):
 *  - every pipelined loop runs at II = 1: one cycle per counted iteration, plus its pipeline
 *    depth once per loop entry (the depths below are design guesses for 100 MHz);
 *  - a loop that reads DDR pays DDR_LATENCY cycles once per entry (first beat of the burst),
 *    then moves HP_EFF_NUM / HP_EFF_DEN = 90% of one 64-bit word per cycle per m_axi port
 *    (ceil(words / 0.9) cycles: the HP port's sustained efficiency, an assumption);
 *  - a "background" loop (the conv weight reader) runs concurrently with a timed loop that
 *    consumes its words: its words are counted, its cycles are not; a conv group step costs
 *    max(compute, ceil(load / 0.9)) ("extra_cycles" holds the part above the loop's
 *    iteration count), a load-bound step 2 x DDR_LATENCY more for the reader's two burst
 *    starts, and the first (preload) step of a chunk DDR_LATENCY.
 * Iterations are counted at run time in the C simulation, from the code itself.
 */
#ifndef BNN_ESTIMATE_HPP
#define BNN_ESTIMATE_HPP

namespace bnn {
namespace est {

/// Pipeline depths and latencies of the model (cycles at 100 MHz). Design guesses.
constexpr unsigned DEPTH_CONV = 12;   // BRAM read 2, xnor+popcount tree 4, acc 1, threshold 2, write 1, margin
constexpr unsigned DEPTH_DENSE = 10;  // m_axi read 1, BRAM read 2, popcount 4, acc 1, threshold 2
constexpr unsigned DEPTH_COPY = 3;
constexpr unsigned DDR_LATENCY = 40;  // first beat of a burst, Zynq-7000 HP port (assumed)
constexpr unsigned HP_EFF_NUM = 9, HP_EFF_DEN = 10;  // sustained HP port efficiency (assumed 90%)

/// Cycles to move \p words through one HP port at HP_EFF_NUM / HP_EFF_DEN words per cycle.
constexpr unsigned long long hp_cycles(unsigned long long words) {
    return (words * HP_EFF_DEN + HP_EFF_NUM - 1) / HP_EFF_NUM;
}

}  // namespace est
}  // namespace bnn

#ifndef __SYNTHESIS__

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bnn {
namespace est {

/// Counts of one loop (by name) within one layer.
struct LoopStat {
    uint64_t entries = 0;
    uint64_t iterations = 0;
    uint64_t overhead = 0;  // pipeline depth + DDR latency, summed over entries
    uint64_t hp_stall = 0;  // ceil(words / 0.9) - words of a timed DDR loop, summed over entries
    bool timed = true;
    uint64_t cycles() const { return timed ? iterations + overhead + hp_stall : 0; }
};

/// Counts of one layer (or a pseudo-layer: "setup", "input", "flatten", "scores").
struct LayerStat {
    std::string name;
    std::map<std::string, LoopStat> loops;
    std::map<std::string, uint64_t> ddr_read_words;   // per m_axi port
    std::map<std::string, uint64_t> ddr_write_words;  // per m_axi port
    uint64_t extra_cycles = 0;
    uint64_t cycles() const {
        uint64_t c = extra_cycles;
        for (const auto& kv : loops) c += kv.second.cycles();
        return c;
    }
};

/// The recorder of one kernel run. Inactive (nullptr) unless a testbench installs one.
struct Recorder {
    std::vector<LayerStat> layers;
    int current = -1;
    LayerStat& layer(const std::string& name) {
        for (size_t i = 0; i < layers.size(); ++i)
            if (layers[i].name == name) { current = int(i); return layers[i]; }
        layers.push_back(LayerStat());
        layers.back().name = name;
        current = int(layers.size()) - 1;
        return layers.back();
    }
};

inline Recorder*& recorder() {
    static Recorder* r = nullptr;
    return r;
}

inline void set_layer(const std::string& name) {
    if (recorder()) recorder()->layer(name);
}

inline void add_cycles(uint64_t c) {
    Recorder* r = recorder();
    if (r && r->current >= 0) r->layers[r->current].extra_cycles += c;
}

/// One entry of one pipelined loop; counts iterations, records on destruction.
class Loop {
  public:
    /// \param name     loop name in the report
    /// \param depth    pipeline depth paid once per entry
    /// \param port     m_axi port read (nullptr: none); one word per iteration
    /// \param timed    false for a background loop overlapped with a timed one
    /// \param write    the port is written, not read
    Loop(const char* name, unsigned depth, const char* port = nullptr, bool timed = true,
         bool write = false)
        : name_(name), depth_(depth), port_(port), timed_(timed), write_(write) {}
    void tick() { ++n_; }
    ~Loop() {
        Recorder* r = recorder();
        if (!r || r->current < 0) return;
        LayerStat& l = r->layers[r->current];
        LoopStat& s = l.loops[name_];
        s.entries += 1;
        s.iterations += n_;
        s.timed = timed_;
        s.overhead += depth_ + ((port_ && !write_ && timed_) ? DDR_LATENCY : 0);
        if (port_ && timed_) s.hp_stall += hp_cycles(n_) - n_;
        if (port_) (write_ ? l.ddr_write_words : l.ddr_read_words)[port_] += n_;
    }

  private:
    const char* name_;
    unsigned depth_;
    const char* port_;
    bool timed_, write_;
    uint64_t n_ = 0;
};

}  // namespace est
}  // namespace bnn

#define BNN_EST_LAYER(name) ::bnn::est::set_layer(name)
#define BNN_EST_LOOP(var, name, depth) ::bnn::est::Loop var(name, depth)
#define BNN_EST_DDR_LOOP(var, name, depth, port) ::bnn::est::Loop var(name, depth, port)
#define BNN_EST_DDR_WRITE_LOOP(var, name, depth, port) \
    ::bnn::est::Loop var(name, depth, port, true, true)
#define BNN_EST_BG_LOOP(var, name, port) ::bnn::est::Loop var(name, 0, port, false)
#define BNN_EST_TICK(var) var.tick()
#define BNN_EST_CYCLES(c) ::bnn::est::add_cycles(c)

#else  // __SYNTHESIS__

#define BNN_EST_LAYER(name)
#define BNN_EST_LOOP(var, name, depth)
#define BNN_EST_DDR_LOOP(var, name, depth, port)
#define BNN_EST_DDR_WRITE_LOOP(var, name, depth, port)
#define BNN_EST_BG_LOOP(var, name, port)
#define BNN_EST_TICK(var)
#define BNN_EST_CYCLES(c)

#endif  // __SYNTHESIS__

#endif  // BNN_ESTIMATE_HPP
