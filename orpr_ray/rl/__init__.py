"""orpr_ray.rl"""
