"""MLflow beyond a fit's run: the fit's best weights as an MLflow model (:mod:`.models`, code in
:mod:`.model_code`), the Model Registry (:mod:`.registry`) and the resolution of ``runs:/`` and
``models:/`` weights to their safetensors file (:mod:`.resolve`)."""
