"""Reading preference rows, rendering them with the chat template, tokenizing and batching them."""
