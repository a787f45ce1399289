"""The node classes the emulator knows, declared as ComfyUI 0.3.64 declares them (``INPUT_TYPES`` form)."""

from typing import Any

from comfy.emulator.nodes import InputSpec, ModelCatalog, NodeDef

SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]  # fmt: skip
SCHEDULERS = [
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
]  # fmt: skip
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
MAX_RESOLUTION = 16384


def _model_combo(names: list[str], options: dict[str, Any] | None = None) -> InputSpec:
    return [names, options or {}]


def _v3_combo(values: list[str], **options: Any) -> InputSpec:
    return ["COMBO", {"multiselect": False, "options": values, **options}]


_SAVE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def build_node_defs(catalog: ModelCatalog) -> dict[str, NodeDef]:
    """Every node class the emulator can validate and run, by class_type."""
    vae_names = [*catalog.names("vae"), "pixel_space"]
    defs = [
        NodeDef(
            name="UNETLoader",
            required={
                "unet_name": _model_combo(catalog.names("diffusion_models")),
                "weight_dtype": [["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {}],
            },
            output=("MODEL",),
            category="advanced/loaders",
            python_module="nodes",
            display_name="Load Diffusion Model",
        ),
        NodeDef(
            name="DualCLIPLoader",
            required={
                "clip_name1": _model_combo(catalog.names("text_encoders")),
                "clip_name2": _model_combo(catalog.names("text_encoders")),
                "type": [["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"], {}],
            },
            optional={"device": [["default", "cpu"], {"advanced": True}]},
            output=("CLIP",),
            category="advanced/loaders",
            python_module="nodes",
            display_name="DualCLIPLoader",
            description=(
                "[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\n"
                "flux: clip-l, t5\nhidream: at least one of t5 or llama, recommended t5 and llama\n"
                "hunyuan_image: qwen2.5vl 7b and byt5 small"
            ),
        ),
        NodeDef(
            name="VAELoader",
            required={"vae_name": _model_combo(vae_names)},
            output=("VAE",),
            category="loaders",
            python_module="nodes",
            display_name="Load VAE",
        ),
        NodeDef(
            name="CheckpointLoaderSimple",
            required={
                "ckpt_name": _model_combo(
                    catalog.names("checkpoints"), {"tooltip": "The name of the checkpoint (model) to load."}
                )
            },
            output=("MODEL", "CLIP", "VAE"),
            output_tooltips=(
                "The model used for denoising latents.",
                "The CLIP model used for encoding text prompts.",
                "The VAE model used for encoding and decoding images to and from latent space.",
            ),
            category="loaders",
            python_module="nodes",
            display_name="Load Checkpoint",
            description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        ),
        NodeDef(
            name="LoadImage",
            required={"image": [[], {"image_upload": True}]},
            output=("IMAGE", "MASK"),
            category="image",
            python_module="nodes",
            display_name="Load Image",
            custom_validated=("image",),
        ),
        NodeDef(
            name="ImageScaleToTotalPixels",
            required={
                "image": ["IMAGE", {}],
                "upscale_method": _v3_combo(UPSCALE_METHODS),
                "megapixels": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}],
            },
            output=("IMAGE",),
            category="image/upscaling",
            python_module="comfy_extras.nodes_post_processing",
            v3=True,
        ),
        NodeDef(
            name="ImageScale",
            required={
                "image": ["IMAGE", {}],
                "upscale_method": [UPSCALE_METHODS, {}],
                "width": ["INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}],
                "height": ["INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}],
                "crop": [["disabled", "center"], {}],
            },
            output=("IMAGE",),
            category="image/upscaling",
            python_module="nodes",
            display_name="Upscale Image",
        ),
        NodeDef(
            name="ImageSharpen",
            required={
                "image": ["IMAGE", {}],
                "sharpen_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
                "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}],
                "alpha": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}],
            },
            output=("IMAGE",),
            category="image/postprocessing",
            python_module="comfy_extras.nodes_post_processing",
            v3=True,
        ),
        NodeDef(
            name="ImageBlur",
            required={
                "image": ["IMAGE", {}],
                "blur_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
                "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}],
            },
            output=("IMAGE",),
            category="image/postprocessing",
            python_module="comfy_extras.nodes_post_processing",
            v3=True,
        ),
        NodeDef(
            name="VAEEncode",
            required={"pixels": ["IMAGE", {}], "vae": ["VAE", {}]},
            output=("LATENT",),
            category="latent",
            python_module="nodes",
            display_name="VAE Encode",
        ),
        NodeDef(
            name="VAEDecode",
            required={
                "samples": ["LATENT", {"tooltip": "The latent to be decoded."}],
                "vae": ["VAE", {"tooltip": "The VAE model used for decoding the latent."}],
            },
            output=("IMAGE",),
            output_tooltips=("The decoded image.",),
            category="latent",
            python_module="nodes",
            display_name="VAE Decode",
            description="Decodes latent images back into pixel space images.",
        ),
        NodeDef(
            name="CLIPTextEncode",
            required={
                "text": [
                    "STRING",
                    {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."},
                ],
                "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
            },
            output=("CONDITIONING",),
            output_tooltips=("A conditioning containing the embedded text used to guide the diffusion model.",),
            category="conditioning",
            python_module="nodes",
            display_name="CLIP Text Encode (Prompt)",
            description=(
                "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                "diffusion model towards generating specific images."
            ),
        ),
        NodeDef(
            name="ReferenceLatent",
            required={"conditioning": ["CONDITIONING", {}]},
            optional={"latent": ["LATENT", {}]},
            output=("CONDITIONING",),
            category="advanced/conditioning/edit_models",
            python_module="comfy_extras.nodes_edit_model",
            description=(
                "This node sets the guiding latent for an edit model. If the model supports it you can "
                "chain multiple to set multiple reference images."
            ),
            v3=True,
        ),
        NodeDef(
            name="FluxGuidance",
            required={
                "conditioning": ["CONDITIONING", {}],
                "guidance": ["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}],
            },
            output=("CONDITIONING",),
            category="advanced/conditioning/flux",
            python_module="comfy_extras.nodes_flux",
            v3=True,
        ),
        NodeDef(
            name="ConditioningZeroOut",
            required={"conditioning": ["CONDITIONING", {}]},
            output=("CONDITIONING",),
            category="advanced/conditioning",
            python_module="nodes",
            display_name="ConditioningZeroOut",
        ),
        NodeDef(
            name="KSampler",
            required=_ksampler_inputs(),
            output=("LATENT",),
            output_tooltips=("The denoised latent.",),
            category="sampling",
            python_module="nodes",
            display_name="KSampler",
            description="Uses the provided model, positive and negative conditioning to denoise the latent image.",
        ),
        NodeDef(
            name="SaveImage",
            required={
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": [
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": (
                            "The prefix for the file to save. This may include formatting information such as "
                            "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."
                        ),
                    },
                ],
            },
            hidden=_SAVE_HIDDEN,
            output=(),
            category="image",
            python_module="nodes",
            display_name="Save Image",
            description="Saves the input images to your ComfyUI output directory.",
            output_node=True,
        ),
        NodeDef(
            name="PreviewImage",
            required={"images": ["IMAGE", {}]},
            hidden=_SAVE_HIDDEN,
            output=(),
            category="image",
            python_module="nodes",
            display_name="Preview Image",
            description="Saves the input images to your ComfyUI output directory.",
            output_node=True,
        ),
    ]
    return {d.name: d for d in defs}


def _ksampler_inputs() -> dict[str, InputSpec]:
    return {
        "model": ["MODEL", {"tooltip": "The model used for denoising the input latent."}],
        "seed": [
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": 0xFFFFFFFFFFFFFFFF,
                "control_after_generate": True,
                "tooltip": "The random seed used for creating the noise.",
            },
        ],
        "steps": [
            "INT",
            {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps used in the denoising process."},
        ],
        "cfg": [
            "FLOAT",
            {
                "default": 8.0,
                "min": 0.0,
                "max": 100.0,
                "step": 0.1,
                "round": 0.01,
                "tooltip": (
                    "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher "
                    "values result in images more closely matching the prompt however too high values will "
                    "negatively impact quality."
                ),
            },
        ],
        "sampler_name": [
            SAMPLERS,
            {
                "tooltip": (
                    "The algorithm used when sampling, this can affect the quality, speed, and style of the "
                    "generated output."
                )
            },
        ],
        "scheduler": [
            SCHEDULERS,
            {"tooltip": "The scheduler controls how noise is gradually removed to form the image."},
        ],
        "positive": [
            "CONDITIONING",
            {"tooltip": "The conditioning describing the attributes you want to include in the image."},
        ],
        "negative": [
            "CONDITIONING",
            {"tooltip": "The conditioning describing the attributes you want to exclude from the image."},
        ],
        "latent_image": ["LATENT", {"tooltip": "The latent image to denoise."}],
        "denoise": [
            "FLOAT",
            {
                "default": 1.0,
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": (
                    "The amount of denoising applied, lower values will maintain the structure of the initial "
                    "image allowing for image to image sampling."
                ),
            },
        ],
    }
