/* slm_model.h: llama-family forward pass, KV cache, thread pool and region ids.
 * Included by slm.h. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

/* Operations inside a layer. A region id is  slot * SLM_OP_COUNT + op,  where slot 0 is the
 * token embedding, slots 1..n_layer are the transformer blocks and slot n_layer+1 is the
 * final norm + LM head. SLM_OP_LAYER is the whole slot. */
typedef enum slm_op {
    SLM_OP_LAYER = 0,
    SLM_OP_EMBED,
    SLM_OP_ATTN_NORM,
    SLM_OP_QKV,
    SLM_OP_ROPE_ATTN,
    SLM_OP_ATTN_OUT,
    SLM_OP_FFN_NORM,
    SLM_OP_GATE_UP,
    SLM_OP_DOWN,
    SLM_OP_OUTPUT_NORM,
    SLM_OP_LM_HEAD,
    SLM_OP_COUNT
} slm_op;

#define SLM_REGION_ID(slot, op) ((int32_t)(slot) * SLM_OP_COUNT + (int32_t)(op))

/* The rest of the model API (config, weights, run state, forward) follows. */

#endif /* SLM_MODEL_H */
