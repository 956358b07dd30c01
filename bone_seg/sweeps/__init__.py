"""What commands do with a finished sweep's fit runs (selected through
:mod:`bone_seg.tracking.runs`): their best weights as one ensemble (:mod:`.weights`, ``bone-predict
sweep=``) and the morphometry agreement over their test scans (:mod:`.morpho_agreement`,
``bone-morpho sweep=``). Nothing is imported here."""
