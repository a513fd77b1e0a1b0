// MoDE experts (docs/mode.md §Training an expert): the cluster side file read back, each expert's rows
// of the dataset, and the split of one job's ranks into node groups.
//
// EXPERT DATA. Expert c trains on the rows whose /assign/expert is c plus a
// deterministic random share of out-of-cluster rows: round(ood_share * |c|)
// rows drawn without replacement from all other experts' rows (a function of
// (assignment, c, ood_share, seed) only, so every rank and every rerun draws the
// same ones).
//
// NODE GROUPS. `train-experts` splits the ranks of one mpirun into groups that
// train experts independently (each group its own communicator, so its own
// collectives). plan_node_groups() is the pure rule:
//   * G = min(experts, ranks) groups; group g trains experts g, g+G, g+2G, ...
//     one after another (several only when there are fewer ranks than experts);
//   * nodes >= G: whole nodes per group, contiguous: node k (in order of first
//     rank) goes to group floor(k * G / nodes), so each group gets floor(nodes/G)
//     or ceil(nodes/G) nodes;
//   * otherwise (fewer nodes than groups): ranks split evenly and contiguously
//     in world order: rank i (of R) goes to group floor(i * G / R).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mpi/communicator.h"

namespace curaclip::mode {

// A cluster side file (`curaclip cluster`): what experts and routing need.
struct Assignment {
    std::string path;
    int64_t n_examples = 0, m = 0, n_experts = 0, dim = 0;
    std::vector<int32_t> expert;          // [n_examples] (only when read with rows)
    std::vector<float> fine_centers;      // [m, dim]
    std::vector<int32_t> fine_to_expert;  // [m]
    std::string source_dataset;           // the dataset that was clustered
    std::string source_fingerprint;       // its io::dataset_fingerprint ("" if the file has none)
    std::string checkpoint;               // the model whose text tower made the embeddings ("" if unknown)
    std::string encoder, encoder_id;      // or the sentence encoder that did (folder, BertEncoder::id()); "" if none
};
// Reads and checks a side file; errors name `option` (e.g. "mode.assign"), the
// file, the dataset and the center or row. Refused: non-finite fine centers (a NaN
// center used to route every class to expert 0), fine_to_expert outside [0, n),
// n outside [1, m], attributes m / dim / n_examples that disagree with the shapes,
// /centers/coarse not [n, D], shapes claiming more than the file stores; with
// rows also /assign/expert outside [0, n), /assign/fine outside [0, m), and an
// example whose expert is not its fine center's.
Assignment read_assignment(const std::string& path, bool with_rows, const std::string& option);

// The sorted rows of expert c: its own plus round(ood_share * |own|) others.
std::vector<int64_t> expert_rows(const std::vector<int32_t>& expert_of_row, int64_t n_experts, int64_t c,
                                 double ood_share, uint64_t seed);

struct NodeGroupPlan {
    int groups = 0;
    bool whole_nodes = false;                // true: every group is a set of whole nodes
    std::vector<int> group_of_rank;          // [ranks]
    std::vector<std::vector<int>> experts;   // [groups]: the experts each group trains, in order
};
// node_of_rank[i]: any id of the node of world rank i (equal ids = same node).
NodeGroupPlan plan_node_groups(const std::vector<int>& node_of_rank, int experts);

// Collective: the node index of every rank of comm (MPI_Comm_split_type SHARED),
// numbered 0.. in the order of each node's lowest rank.
std::vector<int> node_of_each_rank(const Communicator& comm);

}  // namespace curaclip::mode
