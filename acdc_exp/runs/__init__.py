"""What a run is, from start to finish and after: training one (``train``), the members it
saves and how to load them (``members``), evaluating a member (``evaluate``) and exporting the
pair to ONNX with its speed report (``export``); a sweep's runs collected into one table
(``collect``). The CLIs and the end of training use these;
this layer sits above ``training``, ``quantization`` and ``deploy`` and nothing below imports it."""
