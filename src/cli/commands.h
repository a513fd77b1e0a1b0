// The commands of `curaclip`; each takes argv with argv[0] = the command name.
#pragma once

namespace curaclip {

class Communicator;

int cmd_prep(int argc, char** argv, const Communicator* world);
int cmd_train(int argc, char** argv, const Communicator& world);
int cmd_eval(int argc, char** argv, const Communicator& world);
int cmd_info(int argc, char** argv);
int cmd_embed(int argc, char** argv, const Communicator& world);
int cmd_cluster(int argc, char** argv, const Communicator& world);
int cmd_train_experts(int argc, char** argv, const Communicator& world);
int cmd_convert(int argc, char** argv);  // open_clip weights in (docs/interop.md)
int cmd_export(int argc, char** argv);   // open_clip weights out

}  // namespace curaclip
