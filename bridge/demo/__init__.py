"""``smbridge demo``: the whole loop on one machine (:mod:`bridge.demo.loop`), over the stand-ins of
:mod:`bridge.sandbox`."""
