#include "mode/experts.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>

#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "mode/clustering.h"

namespace fs = std::filesystem;

namespace curaclip::mode {

namespace {
// Error unless `name` in f stores what its shape claims (io/dataset_reader.h), so
// that a side file whose shape claims 2^40 centers is refused before the read
// allocates them.
void check_stored(const H5File& f, const std::string& name, const std::string& option) {
    std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
    H5Id d(H5Dopen2(f.id(), name.c_str(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), option, ": ", f.path(), ": cannot open dataset ", name, " (corrupt file?)");
    try {
        io::check_stored_shape(d.get(), f.path(), name);
    } catch (const Error& e) {
        CC_USER_FAIL(option, ": ", e.what());
    }
}
}  // namespace

Assignment read_assignment(const std::string& path, bool with_rows, const std::string& option) {
    CC_REQUIRE(!path.empty(), option, ": no cluster assignment file given (the side file of `curaclip cluster`)");
    CC_REQUIRE(fs::exists(path), option, ": cluster assignment file ", path, " does not exist");
    Assignment a;
    a.path = path;
    const H5File f(path, H5File::Mode::read);
    const std::string where = option + ": " + path;
    for (const char* d : {"/assign/expert", "/centers/fine", "/centers/fine_to_expert"}) {
        CC_REQUIRE(f.exists(d), where, " has no dataset ", d, "; is it a `curaclip cluster` side file?");
        check_stored(f, d, option);
    }
    // Fine centers [m, D]: finite (a NaN center is nearest to nothing, and every
    // distance to it compares false: every text would route to fine center 0).
    std::vector<int64_t> shape = f.shape("/centers/fine");
    CC_REQUIRE(shape.size() == 2 && shape[0] > 0 && shape[1] > 0, where, ": /centers/fine has shape of rank ",
               shape.size(), ", expected [m, D] with m, D >= 1");
    a.fine_centers = f.read_f32("/centers/fine", &shape);
    a.m = shape[0];
    a.dim = shape[1];
    for (int64_t s = 0; s < a.m; ++s)
        for (int64_t k = 0; k < a.dim; ++k) {
            const float v = a.fine_centers[size_t(s * a.dim + k)];
            CC_REQUIRE(std::isfinite(v), where, ": /centers/fine: fine center ", s, " holds ", v, " at component ", k,
                       " (expected finite values; re-run `curaclip cluster` on finite embeddings)");
        }
    if (f.has_attr("/", "m"))
        CC_REQUIRE(f.attr_i64("/", "m") == a.m, where, ": attribute m = ", f.attr_i64("/", "m"), " but /centers/fine has ",
                   a.m, " centers");
    if (f.has_attr("/", "dim"))
        CC_REQUIRE(f.attr_i64("/", "dim") == a.dim, where, ": attribute dim = ", f.attr_i64("/", "dim"),
                   " but /centers/fine has ", a.dim, " components per center");
    // Fine center -> expert, in [0, n).
    shape = f.shape("/centers/fine_to_expert");
    CC_REQUIRE(shape.size() == 1 && shape[0] == a.m, where, ": /centers/fine_to_expert must be [", a.m,
               "] (one expert per fine center)");
    a.fine_to_expert = f.read_i32("/centers/fine_to_expert", &shape);
    const int64_t max_expert = int64_t(*std::max_element(a.fine_to_expert.begin(), a.fine_to_expert.end()));
    a.n_experts = f.has_attr("/", "n") ? f.attr_i64("/", "n") : max_expert + 1;
    CC_REQUIRE(a.n_experts >= 1 && a.n_experts <= a.m, where, ": ", a.n_experts,
               " experts (attribute n), expected 1 to m = ", a.m, " (every expert is made of fine centers)");
    for (int64_t s = 0; s < a.m; ++s) {
        const int32_t e = a.fine_to_expert[size_t(s)];
        CC_REQUIRE(e >= 0 && e < a.n_experts, where, ": /centers/fine_to_expert maps fine center ", s, " to expert ", e,
                   ", not one of the ", a.n_experts, " experts (0..", a.n_experts - 1, ")");
    }
    if (f.exists("/centers/coarse")) {
        shape = f.shape("/centers/coarse");
        CC_REQUIRE(shape.size() == 2 && shape[0] == a.n_experts && shape[1] == a.dim, where,
                   ": /centers/coarse must be [", a.n_experts, ", ", a.dim, "] (one center per expert)");
    }
    // Rows: /assign/expert [N] (and /assign/fine [N] where present).
    const std::vector<int64_t> es = f.shape("/assign/expert");
    CC_REQUIRE(es.size() == 1 && es[0] >= 1, where, ": /assign/expert must be 1-D with one expert per example");
    a.n_examples = es[0];
    if (f.has_attr("/", "n_examples"))
        CC_REQUIRE(f.attr_i64("/", "n_examples") == a.n_examples, where, ": attribute n_examples = ",
                   f.attr_i64("/", "n_examples"), " but /assign/expert has ", a.n_examples, " rows");
    const bool has_fine = f.exists("/assign/fine");
    if (has_fine) {
        check_stored(f, "/assign/fine", option);
        CC_REQUIRE(f.shape("/assign/fine") == es, where, ": /assign/fine must be [", a.n_examples,
                   "] like /assign/expert");
    }
    if (f.has_attr("/", "source_dataset")) a.source_dataset = f.attr_string("/", "source_dataset");
    if (f.has_attr("/", "source_fingerprint")) a.source_fingerprint = f.attr_string("/", "source_fingerprint");
    if (f.has_attr("/", "encoder_id")) {  // embeddings by a sentence encoder (embed --encoder)
        a.encoder_id = f.attr_string("/", "encoder_id");
        if (f.has_attr("/", "encoder")) a.encoder = f.attr_string("/", "encoder");
    }
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
        for (int64_t r = 0; r < a.n_examples; ++r) {
            const int32_t e = a.expert[size_t(r)];
            CC_REQUIRE(e >= 0 && e < a.n_experts, where, ": /assign/expert row ", r, " holds ", e, ", not one of the ",
                       a.n_experts, " experts (0..", a.n_experts - 1, ")");
        }
        if (has_fine) {  // each example's expert is its fine center's
            const std::vector<int32_t> fine = f.read_i32("/assign/fine");
            for (int64_t r = 0; r < a.n_examples; ++r) {
                const int32_t s = fine[size_t(r)];
                CC_REQUIRE(s >= 0 && s < a.m, where, ": /assign/fine row ", r, " holds ", s, ", not one of the ", a.m,
                           " fine centers");
                CC_REQUIRE(a.expert[size_t(r)] == a.fine_to_expert[size_t(s)], where, ": row ", r, " is assigned to expert ",
                           a.expert[size_t(r)], " but its fine center ", s, " belongs to expert ",
                           a.fine_to_expert[size_t(s)], " (/assign/expert disagrees with /centers/fine_to_expert)");
            }
        }
    }
    return a;
}

std::vector<int64_t> expert_rows(const std::vector<int32_t>& expert_of_row, int64_t n_experts, int64_t c,
                                 double ood_share, uint64_t seed) {
    CC_REQUIRE(c >= 0 && c < n_experts, "mode.expert = ", c, " but the assignment has ", n_experts, " experts (0..",
               n_experts - 1, ")");
    CC_REQUIRE(ood_share >= 0 && ood_share <= 1, "mode.ood_share must be in [0, 1], got ", ood_share);
    std::vector<int64_t> own, other;
    for (size_t i = 0; i < expert_of_row.size(); ++i) (expert_of_row[i] == c ? own : other).push_back(int64_t(i));
    CC_REQUIRE(!own.empty(), "mode.expert = ", c, " has no examples in the assignment");
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
