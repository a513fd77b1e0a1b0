// curaclip train --config configs/<recipe>.ini [--section.key value ...]
#include "cli/commands.h"
#include "cli/options.h"
#include "model/model_config.h"
#include "train/trainer.h"

namespace curaclip {

int cmd_train(int argc, char** argv, const Communicator& world) {
    po::options_description desc;
    desc.add(model_options()).add(train_options());
    const ParsedOptions p = parse_options(
        argc, argv, desc,
        "usage: mpirun -n P curaclip train --config configs/tiny.ini [--train.steps 500 ...]\n"
        "Data-parallel CLIP training on the ranks of the job; options from the config file,\n"
        "overridden on the command line.");
    if (p.help) return 0;
    TrainOptions opt = train_options_from(p.vm);
    opt.config_text = p.config_text;
    return run_training(opt, model_config_from(p.vm), world);
}

}  // namespace curaclip
