#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "data/DemoTasks.h"

namespace ladder {

// The built-in vision-and-language demo (issue #22, docs/VL.md): program-generated "scenes"
// (a 3x3 grid with 1 to 5 coloured shapes), their visual features from a fixed frozen random encoder, and
// four tasks in the layout of the VL tasks of the LST paper (VQA, GQA, NLVR2, COCO captions) whose
// answers follow from the scenes. Everything is a function of the options (SplitMix64 and FNV-1a only; no
// std distribution, no random_device), so two builds are byte-identical on every platform.

// The recipe of the scene tasks, written to task.json. Bump it whenever any output would change.
constexpr const char* kSceneRecipeVersion = "scenes-v1";

enum class SceneColor { Red, Green, Blue, Yellow, Purple, Gray };
enum class SceneShape { Circle, Square, Triangle };
enum class SceneSize { Small, Large };
constexpr int kSceneColors = 6;
constexpr int kSceneShapes = 3;
constexpr int kSceneSizes = 2;
constexpr int kSceneGrid = 3; // rows and columns
constexpr int kSceneCells = kSceneGrid * kSceneGrid; // = visual tokens ("boxes") per image

const char* toString(SceneColor color); // "red", "green", "blue", "yellow", "purple", "gray"
const char* toString(SceneShape shape); // "circle", "square", "triangle"
const char* toString(SceneSize size); // "small", "large"
// Cell 0..8 in reading order (row = cell / 3, column = cell % 3): "top left", "top middle", "top right",
// "middle left", "center", "middle right", "bottom left", "bottom middle", "bottom right".
const char* scenePositionName(int cell);

struct SceneObject {
    int cell = 0;
    SceneColor color = SceneColor::Red;
    SceneShape shape = SceneShape::Circle;
    SceneSize size = SceneSize::Small;
};

struct Scene {
    std::string id; // the image id: "train-00012", "validation-00003", "test-00099"
    DemoSplit split = DemoSplit::Train;
    std::vector<SceneObject> objects; // 1 to 5, in distinct cells, sorted by cell

    // The object in `cell`, or nullptr when the cell is empty.
    const SceneObject* objectAt(int cell) const;
};

// One line of a split's JSONL. Which fields are written depends on `task` (see writeSceneTasks).
struct SceneExample {
    std::string id; // "train-vqa-00012"
    std::string task; // "vqa", "gqa", "nlvr2", "caption"
    std::vector<std::string> images; // one image; nlvr2: [left, right]
    std::string question; // vqa, gqa
    std::string statement; // nlvr2
    std::vector<std::string> answers; // vqa: the 10 "human" answers
    std::string answer; // gqa: the answer; vqa: the right answer (not written: the majority of `answers`)
    bool label = false; // nlvr2
    std::vector<std::string> captions; // caption: 3 to 5 references
};

struct SceneTaskOptions {
    // Examples per split, a mixture of the four tasks: n / 4 each, the remainder going to vqa, gqa, nlvr2
    // in that order. A caption example is one image with all its references (in every split).
    std::size_t train = 4000;
    std::size_t validation = 400;
    std::size_t test = 400;
    // Seeds the scenes, the questions and the human answers (each split from its own stream).
    std::uint64_t seed = 1122;
    // Seeds the frozen random encoder's W and b; the per-scene noise is seeded by it and the image id.
    std::uint64_t encoderSeed = 22;
    int visualDim = 64;
    // Standard deviation of the per-scene noise added to every feature.
    double noise = 0.05;
};

struct SceneDataset {
    std::vector<Scene> scenes; // every split's, train first
    std::vector<SceneExample> train;
    std::vector<SceneExample> validation;
    std::vector<SceneExample> test;

    const std::vector<SceneExample>& split(DemoSplit which) const;
};

// "vqa", "gqa", "nlvr2", "caption".
std::vector<std::string> sceneTaskNames();

// The scenes of every split (a split's images: max(2, its caption examples)), content-distinct across and
// within splits. Throws ladder::Error on impossible options.
std::vector<Scene> generateScenes(const SceneTaskOptions& options = {});

// The scenes and every split's examples, in the order they are written (hash order of the ids).
SceneDataset buildSceneDataset(const SceneTaskOptions& options = {});

// The fixed frozen random encoder. A cell's input x (18 values) is one-hot: [0] empty, [1..6] colour,
// [7..9] shape, [10..11] size, [12..14] row, [15..17] column (an empty cell has only its empty flag, row and
// column set). Its token is tanh(W x + b) + noise * g, with W [dim, 18] = 0.5 g and b [dim] = 0.1 g drawn
// once from SplitMix64(encoderSeed) (W row-major, then b) and the noise from SplitMix64(encoderSeed ^
// fnv1a64("noise/" + image id)), g = (sum of 12 uniforms in [0, 1)) - 6 (mean 0, variance 1), computed in
// double and stored as float32.
class SceneEncoder {
public:
    static constexpr int kInputs = 18;
    explicit SceneEncoder(std::uint64_t seed = SceneTaskOptions {}.encoderSeed,
        int dim = SceneTaskOptions {}.visualDim, double noise = SceneTaskOptions {}.noise);

    // [9, dim] float32: one token per cell in reading order.
    at::Tensor encode(const Scene& scene) const;
    // The input x of one cell.
    static std::vector<double> cellInput(const Scene& scene, int cell);
    int dim() const { return m_dim; }
    // "scenes: frozen random encoder seed N, dim D" (the features file's "encoder" metadata).
    std::string description() const;

private:
    std::uint64_t m_seed;
    int m_dim;
    double m_noise;
    std::vector<double> m_weight; // [dim, kInputs] row-major
    std::vector<double> m_bias; // [dim]
};

// [9, 4] float32: each cell's normalised (x1, x2, y1, y2) in reading order (cell r, c: c/3, (c+1)/3, r/3,
// (r+1)/3). The same for every scene.
at::Tensor sceneBoxes();

// Writes folder/{train,validation,test}.jsonl, features.safetensors and task.json (creating the folder):
// - each JSONL line: {"id", "task", "image" (vqa, gqa, caption) or "images": [left, right] (nlvr2),
//   "question" (vqa, gqa) or "statement" (nlvr2), then "answers" (vqa: 10 strings), "answer" (gqa),
//   "label" (nlvr2: a JSON boolean) or "captions" (caption)};
// - features.safetensors: per image id a float32 tensor [9, dim] named by the id and "<id>#boxes" [9, 4];
//   __metadata__ {"format": "ladder-visual-features-v1", "encoder": SceneEncoder::description()};
// - task.json: {name "scenes", description, kind "vl", tasks, visual_tokens 9, visual_dim, features,
//   splits: {train: {file, size, images, per_task}, ...}, chance, chance_detail, options, recipe_version}.
void writeSceneTasks(const std::string& folder, const SceneTaskOptions& options = {});

// Whether folder holds the three splits, the features file and a task.json of kind "vl" and this recipe.
bool sceneTasksComplete(const std::string& folder);

// Builds the scene tasks (default options) into folder unless they are complete, in a staging folder
// beside it renamed into place (makeStagingDir / publishStagingDir). Returns true when it built them.
bool ensureSceneTasks(const std::string& folder);

// demoCacheDir() + "/tasks-vl/scenes".
std::string sceneTasksDir();

} // namespace ladder
