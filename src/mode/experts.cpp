#include "mode/experts.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "io/hdf5_file.h"
#include "mode/clustering.h"

namespace fs = std::filesystem;

namespace curaclip::mode {

Assignment read_assignment(const std::string& path, bool with_rows, const std::string& option) {
    CC_CHECK(!path.empty(), option, ": no cluster assignment file given (the side file of `curaclip cluster`)");
    CC_CHECK(fs::exists(path), option, ": cluster assignment file ", path, " does not exist");
    Assignment a;
    a.path = path;
    const H5File f(path, H5File::Mode::read);
    for (const char* d : {"/assign/expert", "/centers/fine", "/centers/fine_to_expert"})
        CC_CHECK(f.exists(d), option, ": ", path, " has no dataset ", d, "; is it a `curaclip cluster` side file?");
    std::vector<int64_t> shape;
    a.fine_centers = f.read_f32("/centers/fine", &shape);
    CC_CHECK(shape.size() == 2 && shape[0] > 0 && shape[1] > 0, option, ": ", path, ": /centers/fine must be [m, D]");
    a.m = shape[0];
    a.dim = shape[1];
    a.fine_to_expert = f.read_i32("/centers/fine_to_expert", &shape);
    CC_CHECK(shape.size() == 1 && shape[0] == a.m, option, ": ", path, ": /centers/fine_to_expert must be [", a.m, "]");
    const std::vector<int64_t> es = f.shape("/assign/expert");
    CC_CHECK(es.size() == 1, option, ": ", path, ": /assign/expert must be 1-D");
    a.n_examples = es[0];
    a.n_experts = f.has_attr("/", "n") ? f.attr_i64("/", "n")
                                       : int64_t(*std::max_element(a.fine_to_expert.begin(), a.fine_to_expert.end())) + 1;
    CC_CHECK(a.n_experts > 0, option, ": ", path, ": no experts");
    for (const int32_t e : a.fine_to_expert)
        CC_CHECK(e >= 0 && e < a.n_experts, option, ": ", path, ": fine center mapped to expert ", e, " of ", a.n_experts);
    if (f.has_attr("/", "source_dataset")) a.source_dataset = f.attr_string("/", "source_dataset");
    if (f.has_attr("/", "checkpoint")) {
        a.checkpoint = f.attr_string("/", "checkpoint");
    } else if (f.has_attr("/", "embeddings")) {  // older side files: ask the embeddings file
        const std::string emb = f.attr_string("/", "embeddings");
        if (fs::exists(emb)) {
            const H5File e(emb, H5File::Mode::read);
            if (e.has_attr("/", "checkpoint")) a.checkpoint = e.attr_string("/", "checkpoint");
        }
    }
    if (with_rows) {
        a.expert = f.read_i32("/assign/expert");
        for (const int32_t e : a.expert)
            CC_CHECK(e >= 0 && e < a.n_experts, option, ": ", path, ": /assign/expert holds ", e, ", not one of the ",
                     a.n_experts, " experts");
    }
    return a;
}

std::vector<int64_t> expert_rows(const std::vector<int32_t>& expert_of_row, int64_t n_experts, int64_t c,
                                 double ood_share, uint64_t seed) {
    CC_CHECK(c >= 0 && c < n_experts, "mode.expert = ", c, " but the assignment has ", n_experts, " experts (0..",
             n_experts - 1, ")");
    CC_CHECK(ood_share >= 0 && ood_share <= 1, "mode.ood_share must be in [0, 1], got ", ood_share);
    std::vector<int64_t> own, other;
    for (size_t i = 0; i < expert_of_row.size(); ++i) (expert_of_row[i] == c ? own : other).push_back(int64_t(i));
    CC_CHECK(!own.empty(), "mode.expert = ", c, " has no examples in the assignment");
    const int64_t k = std::min<int64_t>(int64_t(other.size()), std::llround(ood_share * double(own.size())));
    if (k > 0) {
        // The draw depends on the expert too, so experts get different out-of-cluster rows.
        const uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ (uint64_t(c) + 0x51ED2701u);
        for (const int64_t j : sample_indices(int64_t(other.size()), k, s)) own.push_back(other[size_t(j)]);
        std::sort(own.begin(), own.end());
    }
    return own;
}

NodeGroupPlan plan_node_groups(const std::vector<int>& node_of_rank, int experts) {
    const int R = int(node_of_rank.size());
    CC_CHECK(R > 0, "node groups: no ranks");
    CC_CHECK(experts > 0, "node groups: the number of experts must be positive, got ", experts);
    // Nodes in the order of their first rank.
    std::map<int, int> index;
    std::vector<int> node(static_cast<size_t>(R));
    for (int i = 0; i < R; ++i) {
        auto it = index.find(node_of_rank[size_t(i)]);
        if (it == index.end()) it = index.emplace(node_of_rank[size_t(i)], int(index.size())).first;
        node[size_t(i)] = it->second;
    }
    const int nodes = int(index.size());
    NodeGroupPlan p;
    p.groups = std::min(experts, R);
    p.whole_nodes = nodes >= p.groups;
    p.group_of_rank.resize(size_t(R));
    for (int i = 0; i < R; ++i)
        p.group_of_rank[size_t(i)] = p.whole_nodes ? int(int64_t(node[size_t(i)]) * p.groups / nodes)
                                                   : int(int64_t(i) * p.groups / R);
    p.experts.resize(size_t(p.groups));
    for (int c = 0; c < experts; ++c) p.experts[size_t(c % p.groups)].push_back(c);
    return p;
}

std::vector<int> node_of_each_rank(const Communicator& comm) {
    const Communicator local = comm.split_shared();
    // The node's lowest rank names it.
    int32_t leader = comm.rank();
    local.allreduce_min(&leader, 1);
    std::vector<int32_t> leaders(size_t(comm.size()));
    comm.allgather(&leader, leaders.data(), 1);
    std::vector<int32_t> sorted = leaders;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::vector<int> out(leaders.size());
    for (size_t i = 0; i < leaders.size(); ++i)
        out[i] = int(std::lower_bound(sorted.begin(), sorted.end(), leaders[i]) - sorted.begin());
    return out;
}

}  // namespace curaclip::mode
