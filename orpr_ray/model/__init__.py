"""orpr_ray.model"""
