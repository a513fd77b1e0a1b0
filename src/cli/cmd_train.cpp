// curaclip train --config configs/<recipe>.ini [--section.key value ...]
//
// With --train.resume the run's own stored options (the checkpoint's config
// attribute) sit between the command line and the config file (cli/options.h), so
// naming the recipe again (the README's `RESUME=1 jobs/local/train.sh 2 configs/tiny.ini
// --train.out runs/mine`) continues the run as it was started; what the command line
// changes is then checked by run_training (train/resume_check.h).
#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "model/checkpoint.h"
#include "io/hdf5_file.h"
#include "model/model_config.h"
#include "cli/model_options.h"
#include "cli/train_options.h"
#include "train/trainer.h"

namespace curaclip {

int cmd_train(int argc, char** argv, const Communicator& world) {
    po::options_description desc;
    desc.add(model_options()).add(train_options());
    const std::string usage =
        "usage: mpirun -n P curaclip train --config configs/tiny.ini [--train.steps 500 ...]\n"
        "Data-parallel CLIP training on the ranks of the job; options from the config file,\n"
        "overridden on the command line. --train.resume latest continues the run in train.out with\n"
        "its own options (only train.steps, intervals, threads and stop_at may change).";
    RunDefaults run;
    const std::optional<std::string> resume = peek_option(argc, argv, desc, "train.resume");
    if (resume && !resume->empty()) {
        const std::optional<std::string> out = peek_option(argc, argv, desc, "train.out");
        CC_REQUIRE(out && !out->empty(), "--train.resume ", *resume, " needs --train.out (the run folder to resume)");
        run.origin = resolve_checkpoint(*out, *resume);
        CC_REQUIRE(!is_safetensors_path(run.origin), "--train.resume: ", run.origin,
                   " holds open_clip weights only (safetensors): no optimizer state or data position to resume; "
                   "start a run from them with --train.init_from ", run.origin);
        const H5File f(run.origin, H5File::Mode::read);
        if (f.has_attr("/", "config")) run.ini = f.attr_string("/", "config");
    }
    const ParsedOptions p = parse_options(argc, argv, desc, usage, nullptr, run.origin.empty() ? nullptr : &run);
    if (p.help) return 0;
    if (world.rank() == 0) {
        for (const std::string& note : p.notes) std::printf("resume: %s\n", note.c_str());
        std::fflush(stdout);
    }
    TrainOptions opt = train_options_from(p.vm);
    opt.config_text = p.config_text;
    return run_training(opt, model_config_from(p.vm), world);
}

}  // namespace curaclip
