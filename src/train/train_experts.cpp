#include "train/train_experts.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "model/checkpoint.h"
#include "io/dataset_reader.h"

namespace fs = std::filesystem;

namespace curaclip::mode {

std::string expert_dir(const std::string& out, int64_t c) {
    return (fs::path(out) / ("expert_" + std::to_string(c))).string();
}

std::string ini_set(const std::string& text, const std::string& section, const std::string& key,
                    const std::string& value) {
    std::istringstream in(text);
    std::ostringstream out;
    std::string line, current;
    bool done = false, in_section = false;
    auto flush_missing = [&] {
        if (in_section && !done) {
            out << key << " = " << value << "\n";
            done = true;
        }
    };
    while (std::getline(in, line)) {
        if (!line.empty() && line[0] == '[') {
            flush_missing();
            current = line.substr(1, line.find(']') - 1);
            in_section = current == section;
        } else if (in_section && line.rfind(key + " = ", 0) == 0) {
            line = key + " = " + value;
            done = true;
        }
        out << line << "\n";
    }
    flush_missing();
    if (!done) out << "[" << section << "]\n" << key << " = " << value << "\n";
    return out.str();
}

int train_experts(const TrainOptions& base, const ModelConfig& model_cfg, const Communicator& world,
                  const std::vector<int>* node_of_rank) {
    CC_REQUIRE(!base.init_from.empty(),
               "train-experts: --train.init_from is required: every expert starts from the seed checkpoint (docs/mode.md)");
    CC_REQUIRE(!base.mode_assign.empty(), "train-experts: --mode.assign (the side file of `curaclip cluster`) is required");
    CC_REQUIRE(base.mode_expert < 0, "train-experts trains every expert; for one expert (e.g. one per Slurm array task) "
                                     "use `curaclip train --mode.expert ", base.mode_expert, "`");
    // With rows: every expert id is checked before any group starts training.
    const Assignment a = read_assignment(base.mode_assign, /*with_rows=*/true, "mode.assign");
    const int64_t n_dataset = io::DatasetReader(base.train_path).size();
    CC_REQUIRE(a.n_examples == n_dataset, "mode.assign: ", base.mode_assign, " assigns ", a.n_examples,
               " examples but data.train ", base.train_path, " has ", n_dataset, ": the side file belongs to another dataset");
    const std::vector<int> nodes = node_of_rank ? *node_of_rank : node_of_each_rank(world);
    CC_CHECK(int(nodes.size()) == world.size(), "train-experts: ", nodes.size(), " node ids for ", world.size(), " ranks");
    const NodeGroupPlan plan = plan_node_groups(nodes, int(a.n_experts));
    const int g = plan.group_of_rank[size_t(world.rank())];
    const Communicator group = world.split(g, world.rank());
    const bool root = world.rank() == 0;
    if (root) {
        fs::create_directories(base.out_dir);
        int n_nodes = 0;
        for (int v : nodes) n_nodes = std::max(n_nodes, v + 1);
        std::printf("train-experts: %lld experts of %s on %d ranks, %d node(s): %d group(s) of %s\n",
                    (long long)a.n_experts, base.mode_assign.c_str(), world.size(), n_nodes, plan.groups,
                    plan.whole_nodes ? "whole nodes" : "contiguous ranks (fewer nodes than groups)");
        for (int k = 0; k < plan.groups; ++k) {
            std::string ranks, experts;
            for (int r = 0; r < world.size(); ++r)
                if (plan.group_of_rank[size_t(r)] == k) {
                    if (!ranks.empty()) ranks.push_back(',');
                    ranks.append(std::to_string(r));
                }
            for (int c : plan.experts[size_t(k)]) {
                if (!experts.empty()) experts.push_back(',');
                experts.append(std::to_string(c));
            }
            std::printf("  group %d: ranks %s -> experts %s\n", k, ranks.c_str(), experts.c_str());
        }
        std::fflush(stdout);
    }
    world.barrier();
    for (const int c : plan.experts[size_t(g)]) {
        TrainOptions o = base;
        o.mode_expert = c;
        o.out_dir = expert_dir(base.out_dir, c);
        o.config_text = ini_set(ini_set(base.config_text, "mode", "expert", std::to_string(c)), "train", "out", o.out_dir);
        // Done = the trainer's `finished` marker (written after the final checkpoint AND
        // the final evaluation): an expert stopped at its last step, or during that
        // evaluation, is resumed so that it gets its evaluation line.
        const std::string finished = (fs::path(o.out_dir) / "finished").string();
        if (!base.resume.empty()) {
            if (fs::exists(finished)) {
                if (group.rank() == 0) std::printf("expert %d: already trained (%s), skipped\n", c, finished.c_str());
                continue;
            }
            if (!fs::exists(fs::path(o.out_dir) / "latest")) o.resume.clear();  // not begun yet
        }
        if (group.rank() == 0) {
            std::printf("[group %d] expert %d -> %s\n", g, c, o.out_dir.c_str());
            std::fflush(stdout);
        }
        const int rc = run_training(o, model_cfg, group);
        if (rc != 0) return rc;
        if (!fs::exists(finished)) {  // stopped early (preemption, train.stop_at): resume later
            if (group.rank() == 0)
                std::printf("[group %d] stopped before expert %d finished; rerun with --train.resume latest\n", g, c);
            break;
        }
    }
    world.barrier();
    if (root) std::printf("train-experts: done, experts in %s/expert_<c>\n", base.out_dir.c_str());
    return 0;
}

}  // namespace curaclip::mode
