"""Knowledge base: sources, chunking, embeddings and the hybrid search query."""
