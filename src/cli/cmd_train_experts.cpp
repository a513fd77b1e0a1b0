// curaclip train-experts --config configs/tiny.ini --train.init_from SEED --mode.assign ASSIGN.h5 --train.out runs/mode4
//
// All MoDE experts in one mpirun (src/train/train_experts.h): the ranks are split
// into node groups, each trains its experts from the seed checkpoint into
// <train.out>/expert_<c>/. Same options as `curaclip train`.
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/model_options.h"
#include "cli/train_options.h"
#include "train/train_experts.h"
#include "model/model_config.h"

namespace curaclip {

int cmd_train_experts(int argc, char** argv, const Communicator& world) {
    po::options_description desc;
    desc.add(model_options()).add(train_options());
    const ParsedOptions p = parse_options(
        argc, argv, desc,
        "usage: mpirun -n P curaclip train-experts --config configs/tiny.ini --train.init_from runs/seed \\\n"
        "           --mode.assign data/assign.h5 --train.out runs/mode4 [--train.steps 1000 ...]\n"
        "Trains every MoDE data expert of the cluster side file, each from the seed checkpoint, on its own\n"
        "group of nodes (whole nodes where there are at least as many nodes as experts, otherwise contiguous\n"
        "ranks; with fewer ranks than experts a group trains several, one after another).\n"
        "Expert c goes to <train.out>/expert_<c>/. For one expert per job use `curaclip train --mode.expert c`.");
    if (p.help) return 0;
    TrainOptions opt = train_options_from(p.vm);
    opt.config_text = p.config_text;
    return mode::train_experts(opt, model_config_from(p.vm), world);
}

}  // namespace curaclip
