"""Post-processing of a label volume, streamed slab by slab with memory bounded by two slabs and
the component tables: bone islands below a size, bone beyond the largest components, pores that
are not enclosed by bone (:mod:`bone_seg.postprocess.rules`), found by connected components over
the whole scan in two passes (:mod:`bone_seg.postprocess.stream`)."""
