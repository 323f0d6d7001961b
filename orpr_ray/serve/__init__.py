"""orpr_ray.serve"""
